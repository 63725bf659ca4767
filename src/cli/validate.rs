//! `stator validate`: checks pipeline files and prints every problem with file, line and key.

use std::path::PathBuf;
use std::process::ExitCode;

use stator_engine::config;

/// Arguments of `stator validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also say what each pipeline needs from the server: version, stream, consumers (and how
    /// several workers share them), KV buckets, subjects.
    #[arg(long)]
    pub needs: bool,
}

/// Prints each file's warnings and errors; fails when any file has an error.
pub fn run(args: &Args) -> ExitCode {
    let mut failed = false;
    for file in &args.files {
        match config::load(file) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    println!("{w}");
                }
                println!("{}: ok (pipeline `{}`)", file.display(), loaded.pipeline.name);
                if args.needs {
                    for line in stator_engine::source::requirements(&loaded.pipeline) {
                        println!("  needs: {line}");
                    }
                }
            }
            Err(e) => {
                failed = true;
                println!("{e}");
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
