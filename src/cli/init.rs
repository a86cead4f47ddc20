//! `tidemark init`.

use std::path::PathBuf;

use clap::Args;
use tidemark::Result;
use tidemark::ops::init::{InitOptions, init};

use super::Global;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Repository URL: file:///path, a local path, or s3://bucket/prefix
    #[arg(long, value_name = "URL")]
    repo: String,
    /// Use this existing age identity file instead of generating one
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Also encrypt to this age recipient (repeatable; e.g. an offline break-glass key)
    #[arg(long = "recipient", value_name = "AGE1...")]
    recipients: Vec<String>,
    /// Where to write a generated identity (default: tidemark-identity.txt beside the config)
    #[arg(long, value_name = "FILE")]
    identity_out: Option<PathBuf>,
    /// Use this existing Ed25519 signing key instead of generating tidemark-signing.key
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// S3 endpoint for S3-compatible servers
    #[arg(long)]
    endpoint: Option<String>,
    /// S3 region
    #[arg(long)]
    region: Option<String>,
    /// S3: path-style addressing (endpoint/bucket)
    #[arg(long)]
    path_style: bool,
    /// S3: allow a plain http:// endpoint
    #[arg(long)]
    allow_http: bool,
}

pub async fn run(global: &Global, args: InitArgs) -> Result<()> {
    let opts = InitOptions {
        repo: args.repo,
        config_path: tidemark::config::config_path(global.config.as_deref()),
        identity: args.identity,
        recipients: args.recipients,
        identity_out: args.identity_out,
        signing_key: args.signing_key,
        endpoint: args.endpoint,
        region: args.region,
        path_style: args.path_style.then_some(true),
        allow_http: args.allow_http.then_some(true),
    };
    let report = init(&opts).await?;
    if global.json {
        global.print_json(&report);
        return Ok(());
    }
    println!("created repository {}", report.repository);
    println!("wrote {}", report.config_file.display());
    for r in &report.recipients {
        println!("recipient: {r}");
    }
    if let Some(id) = &report.identity_file {
        if report.generated_identity {
            println!("generated the age identity {} (mode 0600)", id.display());
            eprintln!(
                "\nWARNING: without {} (or another identity of the recipients above) your backups \
                 CANNOT be restored.\nCopy it somewhere safe, away from this machine, now.",
                id.display()
            );
        } else {
            println!("identity: {}", id.display());
        }
    } else {
        eprintln!("note: no identity configured: this machine can back up but not restore");
    }
    if report.generated_signing_key {
        println!("generated the signing key {} (mode 0600)", report.signing_key.display());
    } else {
        println!("signing key: {}", report.signing_key.display());
    }
    println!("trusted signer: {}", report.signer);
    eprintln!("note: a host that only restores needs the identity and the trusted-signers line, not the signing key");
    Ok(())
}
