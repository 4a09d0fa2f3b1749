//! The `accessd` binary: parse the command line, set up logging, run the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = accessd::cli::Cli::parse();
    accessd::cli::init_logging(cli.log_format);
    accessd::cli::execute(cli)
}
