#!/usr/bin/env bash
# Builds the cargo-fuzz targets, seeds their corpora, runs each for a bounded
# time and prints executions, exec/s, corpus size and crashes per target.
#
#   bash fuzz/run.sh                      # every target, 300 s each
#   FUZZ_SECONDS=600 bash fuzz/run.sh config
#
# Environment:
#   FUZZ_SECONDS      time per target (default 300)
#   FUZZ_SANITIZER    cargo fuzz --sanitizer (default none: ASan builds were very
#                     slow here, and safe Rust panics without it)
#   FUZZ_DEBUG_ASSERTIONS=0  build without debug assertions / overflow checks
#   FUZZ_TIMEOUT      seconds one input may take before it counts as a hang (10)
#   SLACK_FIXTURES    envelope seeds (default ../shared/slack-fixtures)
#
# Seeds are built here from files that live elsewhere (the shared fixtures, the
# repo's config example and test configs): nothing under fuzz/ holds data.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
seconds=${FUZZ_SECONDS:-300}
sanitizer=${FUZZ_SANITIZER:-none}
hang=${FUZZ_TIMEOUT:-10}
fixtures=${SLACK_FIXTURES:-$repo/../shared/slack-fixtures}
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=(envelope config); fi

export CARGO_TARGET_DIR="$here/target"
# cargo fuzz passes nightly-only flags; this lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1

build_flags=(-O --sanitizer "$sanitizer")
# Overflow checks turn silent wrap-around in parsing into a finding.
if [ "${FUZZ_DEBUG_ASSERTIONS:-1}" = 1 ]; then build_flags+=(--debug-assertions); fi

cd "$here"

seed_envelope() {
    local dir=$1
    if [ ! -d "$fixtures" ]; then
        echo "note: $fixtures not found; envelope corpus starts from what it has" >&2
        return
    fi
    # Real frames: hello, disconnect and five envelopes.
    for f in "$fixtures"/pysm_*.json; do
        cp "$f" "$dir/seed-$(basename "$f" .json)"
    done
    command -v jq >/dev/null || { echo "note: no jq; derived seeds skipped" >&2; return; }
    # view_submission payloads arrive wrapped in an `interactive` envelope.
    for f in "$fixtures"/bolt_view_submission*.json; do
        jq -c '{envelope_id: "seed-envelope", type: "interactive", accepts_response_payload: true, payload: .}' \
            "$f" >"$dir/seed-$(basename "$f" .json)"
    done
    # app_home_opened is the one event parsed past its type; no fixture has one.
    if [ -f "$fixtures/pysm_env_1.json" ]; then
        jq -c '.payload.event = {type: "app_home_opened", user: "U111", channel: "D111", tab: "home", event_ts: "1610241741.000200"}' \
            "$fixtures/pysm_env_1.json" >"$dir/seed-app_home_opened"
    fi
}

seed_config() {
    local dir=$1
    cp "$repo/config.example.toml" "$dir/seed-config.example.toml"
    command -v python3 >/dev/null || { echo "note: no python3; test configs not used as seeds" >&2; return; }
    # The test configs are Rust string literals; take those that hold a TOML
    # table header and undo the escapes.
    python3 - "$dir" "$repo"/tests/*.rs "$repo"/tests/support/*.rs <<'PY'
import hashlib, re, sys
out, files = sys.argv[1], sys.argv[2:]
raw = re.compile(r'\br(#*)"(.*?)"\1', re.S)
literal = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "0": "\0"}
def unescape(s):
    s = re.sub(r"\\\n\s*", "", s)
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), s)
def texts(source):
    source = source.replace("'\"'", "''")  # a quote char literal would pair up strings wrongly
    for m in raw.finditer(source):
        yield m.group(2)
    for m in literal.finditer(raw.sub("", source)):
        yield unescape(m.group(1))
for path in files:
    for text in texts(open(path, encoding="utf-8").read()):
        if re.search(r"^\[\[?[a-z_.]+\]\]?\s*$", text, re.M):
            name = hashlib.sha1(text.encode()).hexdigest()[:16]
            open(f"{out}/seed-test-{name}", "w", encoding="utf-8").write(text)
PY
}

echo "building fuzz targets (sanitizer: $sanitizer)…"
cargo fuzz build "${build_flags[@]}"

summary=()
for target in "${targets[@]}"; do
    corpus="$here/corpus/$target"
    artifacts="$here/artifacts/$target"
    log="$artifacts/run.log"
    mkdir -p "$corpus" "$artifacts"
    "seed_$target" "$corpus"
    findings() { find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort; }
    before=$(findings)
    echo "fuzzing $target for ${seconds}s (corpus: $(find "$corpus" -type f | wc -l) files)…"
    status=0
    cargo fuzz run "${build_flags[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout="$hang" -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
    new=$(comm -13 <(echo "$before") <(findings) | sed '/^$/d')
    crashes=$(printf '%s' "$new" | grep -c . || true)
    line="$target: ${runs:-?} executions, ${rate:-?} exec/s, corpus $(find "$corpus" -type f | wc -l) files, ${cov:-cov ?}, crashes $crashes (exit $status, log $log)"
    summary+=("$line")
    echo "$line"
    [ -z "$new" ] || printf '  %s\n' $new
done

echo
echo "summary (${seconds}s per target, sanitizer $sanitizer, $(nproc) cores):"
printf '  %s\n' "${summary[@]}"
