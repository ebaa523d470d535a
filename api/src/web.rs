//! The dashboard: `GET /` and `GET /assets/{name}`, the files `scripts/build-web.sh` writes into
//! `API_WEB_DIR` (default `web/dist`).
//!
//! The files are read once at startup and served from memory: the build is a few hundred
//! kilobytes, a request never touches the file system (so no path can escape the directory), and a
//! missing build is found once, logged, and answered with a problem that says how to build it
//! instead of failing the API, whose JSON resources do not need the page.
//!
//! The build names every asset after a hash of its content (`app.3f2a9c1b.js`), so assets are
//! cached for a year as `immutable`, and `index.html`, which names them, is `no-cache` (revalidated
//! with its `ETag`): a new build is picked up on the next load and never mixes with an old one. The
//! page carries a Content-Security-Policy that allows only this origin's files and requests and no
//! inline script or style. Files the build also wrote gzipped (`app.3f2a9c1b.js.gz`) are sent as
//! such to clients that accept gzip.
//!
//! These resources are not in the OpenAPI document: they are a page and its files, not the JSON API.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::problem::{ApiError, Problem};

/// The page's policy: everything from this origin only; no inline script or style, no plugins, no
/// framing, no `<base>` or form targets elsewhere.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// Hashed assets never change under their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The page names the current assets, so a browser must revalidate it every time.
const NO_CACHE: &str = "no-cache";
/// How a build is made, for the message when there is none.
const BUILD_HINT: &str = "build it with scripts/build-web.sh, or point API_WEB_DIR at a build";

/// One file of the build, with its gzipped twin if the build wrote one.
#[derive(Debug)]
struct File {
    content_type: &'static str,
    body: Vec<u8>,
    gzip: Option<Vec<u8>>,
    etag: HeaderValue,
}

/// The loaded build, or why there is none.
#[derive(Debug, Clone)]
pub(crate) struct Dashboard(Arc<Loaded>);

#[derive(Debug)]
enum Loaded {
    Built {
        index: File,
        assets: HashMap<String, File>,
    },
    Missing(String),
}

/// Why a build could not be read.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a plain file name of the build (letters, digits, '.', '-', '_')")]
    BadName(String),
}

impl Dashboard {
    /// Reads the build in `dir`: `index.html` and the files of `assets/`. A missing or unreadable
    /// build is logged and remembered, so that `/` can say what is wrong.
    pub(crate) fn load(dir: &Path) -> Self {
        match read_build(dir) {
            Ok(loaded) => {
                if let Loaded::Built { assets, .. } = &loaded {
                    tracing::info!(dir = %dir.display(), assets = assets.len(), "serving the dashboard");
                }
                Self(Arc::new(loaded))
            }
            Err(error) => {
                let reason = format!(
                    "the dashboard is not built: {error} (API_WEB_DIR={}); {BUILD_HINT}",
                    dir.display()
                );
                tracing::warn!("{reason}");
                Self(Arc::new(Loaded::Missing(reason)))
            }
        }
    }

    /// No build at all: what the tests of the JSON API use.
    #[cfg(feature = "testing")]
    pub(crate) fn missing() -> Self {
        Self(Arc::new(Loaded::Missing(format!(
            "the dashboard is not configured; {BUILD_HINT}"
        ))))
    }
}

fn read_build(dir: &Path) -> Result<Loaded, LoadError> {
    let read = |path: PathBuf| {
        std::fs::read(&path).map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })
    };
    let optional = |path: PathBuf| match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LoadError::Read { path, source }),
    };
    let index = File::new(
        "index.html",
        read(dir.join("index.html"))?,
        optional(dir.join("index.html.gz"))?,
    );
    let assets_dir = dir.join("assets");
    let entries = std::fs::read_dir(&assets_dir).map_err(|source| LoadError::Read {
        path: assets_dir.clone(),
        source,
    })?;
    let mut assets = HashMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Read {
            path: assets_dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_plain_name(&name) {
            return Err(LoadError::BadName(name));
        }
        if name.ends_with(".gz") || !entry.path().is_file() {
            continue;
        }
        let gzip = optional(assets_dir.join(format!("{name}.gz")))?;
        let body = read(entry.path())?;
        assets.insert(name.clone(), File::new(&name, body, gzip));
    }
    Ok(Loaded::Built { index, assets })
}

/// A name the build writes: no separators, no leading dot.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl File {
    fn new(name: &str, body: Vec<u8>, gzip: Option<Vec<u8>>) -> Self {
        // Only for revalidating `index.html` within one deployment: any stable digest will do.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Self {
            content_type: content_type(name),
            body,
            gzip,
            etag,
        }
    }

    /// The file as a response: gzipped if the client accepts it and the build has it, `304` if the
    /// client's copy is current.
    fn respond(&self, request: &HeaderMap, cache_control: &'static str) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if self.gzip.is_some() {
            headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        let current = request
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tags| tags.as_bytes() == self.etag.as_bytes());
        if current {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        let body = match &self.gzip {
            Some(gzip) if accepts_gzip(request) => {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                gzip.clone()
            }
            _ => self.body.clone(),
        };
        (headers, body).into_response()
    }
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a weight above zero.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The dashboard's routes, to merge into the application's router.
pub(crate) fn routes<S>(dashboard: Dashboard) -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .with_state(dashboard)
}

async fn index(State(dashboard): State<Dashboard>, request: HeaderMap) -> Response {
    match dashboard.0.as_ref() {
        Loaded::Built { index, .. } => {
            let mut response = index.respond(&request, NO_CACHE);
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
        }
        Loaded::Missing(reason) => not_built(reason),
    }
}

async fn asset(
    State(dashboard): State<Dashboard>,
    UrlPath(name): UrlPath<String>,
    request: HeaderMap,
) -> Response {
    match dashboard.0.as_ref() {
        Loaded::Built { assets, .. } => match assets.get(&name) {
            Some(file) => file.respond(&request, IMMUTABLE),
            None => ApiError::NotFound(format!("/assets/{name}")).into_response(),
        },
        Loaded::Missing(reason) => not_built(reason),
    }
}

/// A 404 problem whose detail says why there is no page and how to build one.
fn not_built(reason: &str) -> Response {
    let status = StatusCode::NOT_FOUND;
    let problem = Problem {
        kind: "about:blank",
        title: "Not Found".to_owned(),
        status: status.as_u16(),
        detail: reason.to_owned(),
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    /// A build directory of its own under the system's temporary directory.
    fn build_dir(files: &[(&str, &[u8])]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tickpipe-web-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("assets")).expect("mkdir");
        for (name, body) in files {
            std::fs::write(dir.join(name), body).expect("write");
        }
        dir
    }

    async fn get(
        dashboard: &Dashboard,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = routes::<()>(dashboard.clone())
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, headers, body.to_vec())
    }

    #[tokio::test]
    async fn serves_the_page_with_its_policy_and_assets_for_a_year() {
        let dir = build_dir(&[
            ("index.html", b"<!doctype html><title>t</title>"),
            ("assets/app.0123abcd.js", b"console.log(1)"),
            ("assets/app.0123abcd.js.gz", b"gzipped"),
            ("assets/app.4567cdef.css", b"body{}"),
        ]);
        let dashboard = Dashboard::load(&dir);

        let (status, headers, body) = get(&dashboard, "/", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"<!doctype html><title>t</title>");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        let etag = headers[header::ETAG].to_str().expect("etag").to_owned();
        let (status, _, body) = get(&dashboard, "/", &[("if-none-match", &etag)]).await;
        assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));

        let (status, headers, body) = get(&dashboard, "/assets/app.0123abcd.js", &[]).await;
        assert_eq!(
            (status, body.as_slice()),
            (StatusCode::OK, &b"console.log(1)"[..])
        );
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(headers.get(header::CONTENT_ENCODING).is_none());

        let (_, headers, body) = get(
            &dashboard,
            "/assets/app.0123abcd.js",
            &[("accept-encoding", "gzip, deflate, br")],
        )
        .await;
        assert_eq!(body, b"gzipped");
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(headers[header::VARY], "Accept-Encoding");

        let (_, headers, body) = get(
            &dashboard,
            "/assets/app.0123abcd.js",
            &[("accept-encoding", "br, gzip;q=0")],
        )
        .await;
        assert_eq!(body, b"console.log(1)");
        assert!(headers.get(header::CONTENT_ENCODING).is_none());

        let (_, headers, _) = get(&dashboard, "/assets/app.4567cdef.css", &[]).await;
        assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
        for path in [
            "/assets/nope.js",
            "/assets/app.0123abcd.js.gz",
            "/assets/..%2Findex.html",
        ] {
            let (status, headers, _) = get(&dashboard, path, &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_missing_build_is_a_problem_that_says_how_to_build_it() {
        let dashboard = Dashboard::load(Path::new("/nonexistent/tickpipe-web"));
        for path in ["/", "/assets/app.0123abcd.js"] {
            let (status, headers, body) = get(&dashboard, path, &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
            let body = String::from_utf8(body).expect("utf-8");
            assert!(body.contains("scripts/build-web.sh"), "{body}");
            assert!(body.contains("/nonexistent/tickpipe-web"), "{body}");
        }
    }

    #[test]
    fn gzip_is_accepted_unless_weighted_zero() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).expect("header"),
            );
            accepts_gzip(&headers)
        };
        assert!(accepts("gzip"));
        assert!(accepts("deflate, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("br"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
