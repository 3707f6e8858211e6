//! `kassa terminal` (docs/reference/terminal.md): wires the command line to `kassa_terminal`.
//! With `--headless` it runs the line protocol on stdin/stdout; otherwise the screen UI
//! (`kassa_pos_ui`), which logs to `terminal.log` in the data directory instead of stderr.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kassa_server::{Config, ConfigLayer, LogFormat};
use kassa_terminal::{Lang, Terminal, TerminalConfig};
use tokio::io::BufReader;

use crate::cli::TerminalArgs;

const DEFAULT_ISO: &str = "127.0.0.1:8583";
const DEFAULT_HTTP: &str = "http://127.0.0.1:8080";
const DEFAULT_CREDENTIALS: &str = "./kassa-data/demo/credentials.json";
/// The UI's log file, in the terminal's data directory.
const UI_LOG_FILE: &str = "terminal.log";

/// Runs `kassa terminal`; errors end with status 1 and one `kassa: ` line on stderr.
pub fn main(args: &TerminalArgs, log_format: Option<LogFormat>) -> ExitCode {
    match run(args, log_format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}").replace(['\n', '\r'], " ");
            eprintln!("kassa: {message}");
            ExitCode::FAILURE
        }
    }
}

fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    address
        .to_socket_addrs()
        .with_context(|| format!("--host {address:?}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--host {address:?}: no address"))
}

/// `http://…` / `https://…` as given; a bare `HOST:PORT` means `http://HOST:PORT`.
fn http_url(text: &str) -> String {
    if text.starts_with("http://") || text.starts_with("https://") {
        text.trim_end_matches('/').to_owned()
    } else {
        format!("http://{}", text.trim_end_matches('/'))
    }
}

fn run(args: &TerminalArgs, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    if !args.headless {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
            anyhow::bail!("the screen UI needs a terminal on stdin and stdout; without one, use --headless");
        }
    }
    let config =
        Config::load(None, |name| std::env::var(name).ok(), ConfigLayer { log_format, ..ConfigLayer::default() })?;
    let terminal_id = args.tid.trim();
    if terminal_id.len() != 8 || !terminal_id.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        anyhow::bail!("--tid {terminal_id:?}: a terminal id is 8 letters or digits");
    }
    let lang = match args.lang.as_deref() {
        None => Lang::En,
        Some(text) => Lang::parse(text).with_context(|| format!("--lang {text:?}: expected en or zh"))?,
    };
    let credentials = args.credentials.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CREDENTIALS));
    let secrets = kassa_terminal::config::load_secrets(&credentials, terminal_id)?;
    let iso = resolve(args.host.as_deref().unwrap_or(DEFAULT_ISO))?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from("./kassa-data/terminals").join(terminal_id));
    let headless = args.headless;
    if headless {
        crate::logging::init(&config)?;
    } else {
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o700);
        dirs.create(&data_dir).with_context(|| format!("--data-dir {}", data_dir.display()))?;
        crate::logging::init_to_file(&config, &data_dir.join(UI_LOG_FILE))?;
    }
    // Parsed once, here: a bad address ends the program now, not at the first approval; a host
    // name is looked up now.
    let printer = match args.printer.as_deref() {
        None => None,
        Some(text) => Some(kassa_terminal::receipt::Printer::parse(text).context("--printer")?),
    };
    let terminal_config = TerminalConfig {
        terminal_id: terminal_id.to_owned(),
        iso,
        http_url: http_url(args.http.as_deref().unwrap_or(DEFAULT_HTTP)),
        tmk: secrets.tmk,
        tms_credential: secrets.tms_credential,
        data_dir,
        lang,
        exchange_timeout_ms: kassa_terminal::terminal::EXCHANGE_TIMEOUT_MS,
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut terminal = Terminal::start(terminal_config)?;
        terminal.set_printer(printer);
        if !headless {
            let options = kassa_pos_ui::UiOptions { lang, ..kassa_pos_ui::UiOptions::default() };
            kassa_pos_ui::run(terminal, options).await?;
            return Ok(());
        }
        let input = BufReader::new(tokio::io::stdin());
        kassa_terminal::headless::run(&mut terminal, input, tokio::io::stdout()).await.context("stdin/stdout")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_addresses_become_urls() {
        assert_eq!(http_url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(http_url("https://pos.example/"), "https://pos.example");
        assert!(resolve("127.0.0.1:8583").is_ok());
        assert!(resolve("no port").is_err());
    }
}
