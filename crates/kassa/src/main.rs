//! `kassa`, the one binary. Thin on purpose: it parses the command line, loads the one `Config`,
//! installs logging, and wires the store into the servers of `kassa-server`. Anything with logic of
//! its own belongs in a library crate where it can be tested without a process.
//!
//! Errors end the process with status 1 and one line on stderr starting with `kassa: `.

mod audit;
mod bench;
mod card_probe;
mod cli;
mod demo;
mod files;
mod gateway;
mod logging;
mod master_key;
mod payouts;
mod qr;
mod recon;
mod rollup;
mod seed;
mod sim;
mod start;
mod store;
mod terminal;
mod web;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kassa_server::{Config, ConfigLayer};

use crate::cli::{AuditCommand, Cli, Command, StoreArgs};

/// mimalloc instead of glibc's malloc, chosen by measurement: on this project's 2-core machines
/// the host spent about 10 % less CPU per QR payment (`kassa bench --qr`: 1.21 → 1.09 ms, glibc's
/// `malloc_consolidate` and free-list walks gone) and about 7 % less per card sale.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Terminal(args) = &cli.command {
        return terminal::main(args, cli.log_format);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` joins the context chain on one line; a stray newline from a driver would
            // break the one-line promise, so flatten it.
            let message = format!("{error:#}").replace(['\n', '\r'], " ");
            eprintln!("kassa: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Bench(args) = cli.command {
        return bench::run(args);
    }
    let log_format = ConfigLayer { log_format: cli.log_format, ..ConfigLayer::default() };
    let (store_args, flags) = match &cli.command {
        Command::Up(up) => {
            let layer = up.listen.add_to(up.store.layer()?);
            (&up.store, ConfigLayer { demo: Some(!up.no_demo), simulators: Some(true), ..layer })
        }
        Command::Serve(serve) => (&serve.store, serve.listen.add_to(serve.store.layer()?)),
        Command::Sim(args) => {
            let layer = ConfigLayer {
                sim: args.sim,
                data_dir: args.data_dir.clone(),
                simulators: Some(true),
                ..ConfigLayer::default()
            };
            (&NO_STORE_ARGS, layer)
        }
        Command::Migrate(store) => (store, store.layer()?),
        Command::Backup(args) | Command::Restore(args) => (&args.store, args.store.layer()?),
        Command::Audit(AuditCommand::Verify(store)) => (store, store.layer()?),
        Command::Recon(args) => (&args.store, args.store.layer()?),
        Command::Payouts(args) => (&args.store, args.store.layer()?),
        Command::Bench(_) | Command::Terminal(_) => return Ok(()),
    };
    let config = load_config(store_args, log_format.overlaid_by(flags))?;
    logging::init(&config)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(_) => start::run(config, start::Mode::Up).await,
            Command::Serve(_) => start::run(config, start::Mode::Serve).await,
            Command::Sim(_) => sim::run(config).await,
            Command::Migrate(_) => migrate(&config).await,
            Command::Backup(args) => backup(&config, &args.file).await,
            Command::Restore(args) => restore(&config, &args.file).await,
            Command::Audit(AuditCommand::Verify(_)) => audit::verify(&config).await,
            Command::Recon(args) => {
                let request =
                    recon::ReconRequest { channel: args.channel, date: args.date, file: args.file, json: args.json };
                recon::run(&config, &request).await
            }
            Command::Payouts(args) => {
                payouts::run(&config, &payouts::PayoutsRequest { date: args.date, json: args.json }).await
            }
            Command::Bench(_) | Command::Terminal(_) => Ok(()),
        }
    })
}

/// `kassa sim` has no configuration file nor data directory: defaults, `KASSA_*`, flags.
const NO_STORE_ARGS: StoreArgs = StoreArgs { config: None, data_dir: None, database_url: None };

fn load_config(store_args: &StoreArgs, flags: ConfigLayer) -> anyhow::Result<Config> {
    let config = Config::load(store_args.config.as_deref(), |name| std::env::var(name).ok(), flags)?;
    Ok(config)
}

#[expect(clippy::print_stdout, reason = "the outcome is what `kassa migrate` is run for")]
async fn migrate(config: &Config) -> anyhow::Result<()> {
    store::open(config).await?.migrate().await?;
    println!("database {} is migrated", config.database_url);
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the outcome is what `kassa backup` is run for")]
async fn backup(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    store::open(config).await?.backup(file).await?;
    println!("backup of {} written to {}", config.database_url, file.display());
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the outcome is what `kassa restore` is run for")]
async fn restore(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let _lock = files::lock_data_dir(&config.data_dir, "restoring into it")?;
    let report = store::open(config).await?.restore(file).await?;
    println!(
        "restored {} into {}: {} transactions, {} ledger entries (balanced), {} audit records (chain verified)",
        file.display(),
        config.database_url,
        report.transactions,
        report.ledger_entries,
        report.audit_records
    );
    Ok(())
}
