//! Backups (备份), the institution's administrator only: take a backup (the store's own
//! consistent copy, the same as `kassa backup FILE`) into the host's backup directory, list the
//! backups there with their size and time, verify one (on a copy: every migration applied, the
//! ledger balanced, the audit chain unbroken; a PostgreSQL backup's digest), and download one
//! (streamed). Taking one is audited.
//!
//! The directory is the host's to choose: [`with_backups`] mounts it (`kassa up` uses
//! `<data dir>/backups`). Without it the page says backups are not configured here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path as UrlPath, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use kassa_auth::Role;
use kassa_store::web_money::{verify_backup, BackupCheck};
use kassa_store::{AuditEvent, WriteOp, WriteUnit};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::page::{format_time_ms, render, see_other, Chrome, PageError, Posted, Viewer};
use crate::WebState;

/// Backups listed at most (the newest).
pub const BACKUPS_LISTED_MAX: usize = 200;
/// Directory entries read at most while listing.
const ENTRIES_READ_MAX: usize = 10_000;
/// The longest backup file name accepted, bytes.
const NAME_BYTES_MAX: usize = 128;
/// Bytes read per chunk of a download.
const CHUNK_BYTES: usize = 64 * 1024;
/// Where verification copies go, under the backup directory.
const SCRATCH: &str = ".verify";

/// The host's backup directory, mounted by [`with_backups`]; one backup or check at a time.
#[derive(Debug, Clone)]
pub struct BackupDir {
    dir: PathBuf,
    busy: Arc<tokio::sync::Mutex<()>>,
}

impl BackupDir {
    /// Backups in `dir` (created, private, at the first backup).
    pub fn new(dir: impl Into<PathBuf>) -> BackupDir {
        BackupDir { dir: dir.into(), busy: Arc::new(tokio::sync::Mutex::new(())) }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// The pages' router (from [`crate::router`]) with its backups in `dir`: the host calls this
/// once, e.g. `with_backups(kassa_web::router(state), data_dir.join("backups"))`.
pub fn with_backups(router: Router, dir: impl Into<PathBuf>) -> Router {
    router.layer(Extension(BackupDir::new(dir)))
}

/// The backup directory of the request, if the host mounted one.
struct Backups(Option<BackupDir>);

impl<S: Send + Sync> FromRequestParts<S> for Backups {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Backups(parts.extensions.get::<BackupDir>().cloned()))
    }
}

/// The routes of backups.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/backups", get(list).post(take))
        .route("/backups/verify", post(verify))
        .route("/backups/file/{name}", get(download))
}

fn admin(viewer: &Viewer) -> Result<(), PageError> {
    viewer.require_role(&[Role::InstitutionAdmin])
}

/// A backup's file name as the pages accept it: letters, digits, `-`, `_`, `.`, not hidden.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

struct Entry {
    name: String,
    size: String,
    modified: String,
}

#[derive(Template)]
#[template(path = "backups/list.html")]
struct ListPage {
    chrome: Chrome,
    configured: bool,
    dir: String,
    entries: Vec<Entry>,
    result: Option<(bool, String)>,
}

/// A size in bytes in words (exact bytes below 1 KiB; one decimal above, computed in integers).
fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut scaled = bytes;
    while scaled >= 1024 * 1024 && unit + 1 < UNITS.len() {
        scaled /= 1024;
        unit += 1;
    }
    let tenths = scaled.saturating_mul(10) / 1024;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

async fn entries(dir: &Path) -> Result<Vec<Entry>, PageError> {
    let mut read = match tokio::fs::read_dir(dir).await {
        Ok(read) => read,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(PageError::Internal(format!("{}: {error}", dir.display()))),
    };
    let mut found = Vec::new();
    let mut seen = 0;
    while let Some(entry) = read.next_entry().await.map_err(|e| PageError::Internal(e.to_string()))? {
        seen += 1;
        if seen > ENTRIES_READ_MAX {
            break;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata().await else { continue };
        if !meta.is_file() || !valid_name(&name) {
            continue;
        }
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .unwrap_or(0);
        found.push((modified_ms, name, meta.len()));
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    found.truncate(BACKUPS_LISTED_MAX);
    Ok(found
        .into_iter()
        .map(|(ms, name, len)| Entry { name, size: size_text(len), modified: format_time_ms(ms) })
        .collect())
}

async fn list_page(
    viewer: &Viewer,
    backups: Option<&BackupDir>,
    result: Option<(bool, String)>,
) -> Result<ListPage, PageError> {
    Ok(ListPage {
        chrome: viewer.chrome("backups-title"),
        configured: backups.is_some(),
        dir: backups.map(|b| b.dir.display().to_string()).unwrap_or_default(),
        entries: match backups {
            Some(b) => entries(&b.dir).await?,
            None => Vec::new(),
        },
        result,
    })
}

async fn list(viewer: Viewer, Backups(backups): Backups) -> Result<Response, PageError> {
    admin(&viewer)?;
    render(&list_page(&viewer, backups.as_ref(), None).await?)
}

#[derive(Deserialize)]
struct TakeForm {}

/// `kassa-YYYY-MM-DD-HHMMSS-mmm.<ext>` of the instant `ms` (UTC).
fn backup_name(ms: i64, backend: &str) -> String {
    let seconds = ms.div_euclid(1000);
    let date = kassa_domain::CivilDate::from_days_since_epoch(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let ext = if backend == "sqlite" { "sqlite3" } else { "pgbackup" };
    format!(
        "kassa-{date}-{:02}{:02}{:02}-{:03}.{ext}",
        of_day / 3600,
        (of_day % 3600) / 60,
        of_day % 60,
        ms.rem_euclid(1000)
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

async fn take(
    State(state): State<WebState>,
    Backups(backups): Backups,
    posted: Posted<TakeForm>,
) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    admin(&viewer)?;
    let Some(backups) = backups else { return Err(PageError::Bad("backups-not-configured")) };
    let Ok(_busy) = backups.busy.try_lock() else {
        let page = list_page(&viewer, Some(&backups), Some((false, viewer.lang.t("backups-busy")))).await?;
        return Ok((StatusCode::CONFLICT, Html(page.render()?)).into_response());
    };
    create_private_dir(&backups.dir).await?;
    let at_ms = now_ms();
    let name = backup_name(at_ms, state.store.admin.backend());
    let path = backups.dir.join(&name);
    if let Err(error) = state.store.admin.backup(&path).await {
        tracing::error!(%error, path = %path.display(), "a backup from the back office failed");
        let _ = tokio::fs::remove_file(&path).await;
        let page = list_page(&viewer, Some(&backups), Some((false, viewer.lang.t("backups-failed")))).await?;
        return Ok((StatusCode::INTERNAL_SERVER_ERROR, Html(page.render()?)).into_response());
    }
    let size = tokio::fs::metadata(&path).await.map(|m| m.len()).unwrap_or(0);
    state
        .store
        .commit(WriteUnit::ops(vec![WriteOp::Audit(AuditEvent {
            at_ms,
            actor: viewer.session.subject(),
            action: "backup_taken".into(),
            target: format!("backup:{name}"),
            source: viewer.source.clone(),
            reason: String::new(),
            details: serde_json::json!({ "file": name, "bytes": size }),
        })]))
        .await?;
    Ok(see_other("/backups?done=done-backups-taken"))
}

#[cfg(unix)]
async fn create_private_dir(dir: &Path) -> Result<(), PageError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::create_dir_all(dir).await.map_err(|e| PageError::Internal(format!("{}: {e}", dir.display())))?;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(|e| PageError::Internal(format!("{}: {e}", dir.display())))
}

#[cfg(not(unix))]
async fn create_private_dir(dir: &Path) -> Result<(), PageError> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| PageError::Internal(format!("{}: {e}", dir.display())))
}

#[derive(Deserialize)]
struct VerifyForm {
    name: String,
}

/// The path of backup `name` in the directory, if it names one.
async fn existing(backups: &BackupDir, name: &str) -> Result<PathBuf, PageError> {
    if !valid_name(name) {
        return Err(PageError::NotFound);
    }
    let path = backups.dir.join(name);
    match tokio::fs::metadata(&path).await {
        Ok(meta) if meta.is_file() => Ok(path),
        _ => Err(PageError::NotFound),
    }
}

async fn verify(Backups(backups): Backups, posted: Posted<VerifyForm>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    admin(&viewer)?;
    let Some(backups) = backups else { return Err(PageError::Bad("backups-not-configured")) };
    let path = existing(&backups, &form.name).await?;
    let Ok(_busy) = backups.busy.try_lock() else {
        let page = list_page(&viewer, Some(&backups), Some((false, viewer.lang.t("backups-busy")))).await?;
        return Ok((StatusCode::CONFLICT, Html(page.render()?)).into_response());
    };
    let lang = viewer.lang;
    let (status, result) = match verify_backup(&path, &backups.dir.join(SCRATCH)).await {
        Ok(BackupCheck::Sqlite { ledger_entries, audit_records }) => (
            StatusCode::OK,
            (true, lang.t2("backups-verified-sqlite", "entries", ledger_entries, "records", audit_records)),
        ),
        Ok(BackupCheck::Postgres { tables }) => {
            (StatusCode::OK, (true, lang.t1("backups-verified-postgres", "tables", tables)))
        }
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "a backup does not verify");
            (StatusCode::UNPROCESSABLE_ENTITY, (false, lang.t1("backups-not-verified", "why", error.to_string())))
        }
    };
    let result = (result.0, format!("{}: {}", form.name, result.1));
    let page = list_page(&viewer, Some(&backups), Some(result)).await?;
    Ok((status, Html(page.render()?)).into_response())
}

async fn download(
    viewer: Viewer,
    Backups(backups): Backups,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, PageError> {
    admin(&viewer)?;
    let Some(backups) = backups else { return Err(PageError::NotFound) };
    let path = existing(&backups, &name).await?;
    let file = tokio::fs::File::open(&path).await.map_err(|_| PageError::NotFound)?;
    let length = file.metadata().await.map(|m| m.len()).ok();
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0u8; CHUNK_BYTES];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buffer)), Some(file)))
            }
            Err(error) => Some((Err(error), None)),
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(CONTENT_DISPOSITION, value);
    }
    if let Some(length) = length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(response)
}
