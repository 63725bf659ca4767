//! `stator completions SHELL` and `stator man`: generated from the same clap definition as
//! the command line itself, so they cannot drift from it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `stator completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `stator man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory the pages are written to (`stator.1`, `stator-run.1`, ...).
    #[arg(long, default_value = "man")]
    pub out: PathBuf,
}

/// Prints the completion script for `args.shell` on standard output.
///
/// # Errors
/// Never; the signature matches the other subcommands.
pub fn completions(args: &CompletionsArgs, cmd: &mut clap::Command) -> anyhow::Result<ExitCode> {
    clap_complete::generate(args.shell, cmd, "stator", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Writes `stator.1` and one page per subcommand into `args.out`, and names them.
///
/// # Errors
/// When the directory cannot be written.
pub fn man(args: &ManArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    clap_mangen::generate_to(cmd, &args.out).with_context(|| format!("writing man pages to {}", args.out.display()))?;
    let mut pages: Vec<_> = std::fs::read_dir(&args.out)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    pages.sort();
    for page in pages.iter().filter(|p| p.extension().is_some_and(|e| e == "1")) {
        println!("wrote {}", page.display());
    }
    Ok(ExitCode::SUCCESS)
}
