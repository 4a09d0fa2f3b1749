//! Who runs a CLI command, for the audit log: the OS user the process runs
//! as, asked of the kernel (`getuid`), named from `/etc/passwd`. Never
//! `$USER` or `$SUDO_USER` alone: anyone can set those.

/// `cli:NAME (uid N)`; under sudo as root, also whom sudo says ran it.
pub(crate) fn cli_actor() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = Some(unsafe { libc::getuid() });
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    actor_of(uid, &passwd, std::env::var("SUDO_USER").ok())
}

fn actor_of(uid: Option<u32>, passwd: &str, sudo_user: Option<String>) -> String {
    let Some(uid) = uid else {
        return "cli:unknown".into();
    };
    let name = passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
    });
    // Only root can have been reached through sudo; for anyone else the
    // variable is just text they set, so it is left out.
    let sudo = sudo_user
        .filter(|u| uid == 0 && usable(u))
        .map(|by| format!("sudo from {by}"));
    match (name.filter(|n| usable(n)), sudo) {
        (Some(name), Some(sudo)) => format!("cli:{name} (uid {uid}, {sudo})"),
        (Some(name), None) => format!("cli:{name} (uid {uid})"),
        (None, Some(sudo)) => format!("cli:uid {uid} ({sudo})"),
        (None, None) => format!("cli:uid {uid}"),
    }
}

/// A name fit for an audit row: short, no control characters.
fn usable(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.chars().any(|c| c.is_control() || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nann:x:1000:1000:Ann:/home/ann:/bin/sh\n";

    #[test]
    fn the_kernel_uid_decides_and_sudo_is_believed_only_for_root() {
        assert_eq!(actor_of(Some(1000), PASSWD, None), "cli:ann (uid 1000)");
        // Ann setting SUDO_USER=bob changes nothing.
        assert_eq!(
            actor_of(Some(1000), PASSWD, Some("bob".into())),
            "cli:ann (uid 1000)"
        );
        assert_eq!(
            actor_of(Some(0), PASSWD, Some("ann".into())),
            "cli:root (uid 0, sudo from ann)"
        );
        assert_eq!(actor_of(Some(4242), PASSWD, None), "cli:uid 4242");
        assert_eq!(
            actor_of(Some(0), PASSWD, Some("a\nb".into())),
            "cli:root (uid 0)"
        );
        assert_eq!(actor_of(None, PASSWD, None), "cli:unknown");
    }
}
