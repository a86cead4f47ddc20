//! `tidemark signing-key`.

use std::path::PathBuf;

use clap::Subcommand;
use tidemark::Result;
use tidemark::ops::signing::{SignerReport, new_key, show};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Generate a new Ed25519 signing key (mode 0600); add its public key to trusted-signers
    New {
        /// The key file to create
        #[arg(long, value_name = "FILE", default_value = "tidemark-signing.key")]
        out: PathBuf,
    },
    /// Print a signing key's public key (for trusted-signers) and its PEM (for openssl)
    Show {
        /// The key file (default: repository.signing-key of the config)
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

pub fn run(global: &Global, cmd: SigningKeyCommand) -> Result<()> {
    let report = match cmd {
        SigningKeyCommand::New { out } => new_key(&out)?,
        SigningKeyCommand::Show { file } => {
            let config = if file.is_none() { Some(global.load_config()?) } else { None };
            show(file.as_deref(), config.as_ref())?
        }
    };
    print(global, &report);
    Ok(())
}

fn print(global: &Global, report: &SignerReport) {
    if global.json {
        global.print_json(report);
        return;
    }
    if let Some(file) = &report.key_file {
        println!("signing key: {}", file.display());
    }
    println!("public key (for repository.trusted-signers): {}", report.public_key);
    print!("{}", report.pem);
}
