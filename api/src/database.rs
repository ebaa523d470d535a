//! The API's access to PostgreSQL: queries under one deadline, and a fast 503 while the server
//! refuses connections.
//!
//! Why a gate of its own: when PostgreSQL is down, sqlx's pool treats a refused connection as "the
//! server is starting" and retries it quietly until the acquire timeout, so every request would wait
//! for the whole query timeout (2 s) before its 503. A request that has waited [`PROBE_AFTER`] for a
//! connection therefore asks one direct connection attempt (outside the pool, which does not retry)
//! whether the server refuses connections. If it does, the gate closes: that request and every
//! following one answer 503 at once, without touching the pool, while a background task retries a
//! direct connection every [`RECOVERY_INTERVAL`] and opens the gate again as soon as one succeeds.
//! A request that is merely slow (a busy pool, a long query) sees a server that accepts
//! connections and keeps waiting, up to the query timeout as before.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::problem::ApiError;

/// How long a request waits for a pooled connection before asking whether the server refuses
/// connections. Well under the 100 ms a 503 should take; an idle-pool request never waits this long.
pub(crate) const PROBE_AFTER: Duration = Duration::from_millis(20);
/// A probe's answer is reused for this long, so a burst of slow requests costs one connection
/// attempt, not one each.
const PROBE_REUSE: Duration = Duration::from_millis(100);
/// A probe that takes longer than this (an unreachable host that drops packets rather than refusing)
/// says nothing; the request keeps waiting for the pool, up to the query timeout.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the background task tries to connect while the gate is closed.
pub(crate) const RECOVERY_INTERVAL: Duration = Duration::from_millis(100);

/// What a direct connection attempt said about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It accepted a connection.
    Accepting,
    /// It refused (nothing listens on the port, no socket file), or said it is shutting down or
    /// starting up: a query cannot succeed now.
    Refusing,
    /// Anything else (slow, authentication, too many connections): let the query decide.
    Unknown,
}

#[derive(Debug, Default)]
struct GateState {
    /// The server refused connections; answer 503 without waiting.
    closed: AtomicBool,
    /// A background task is trying to connect.
    recovering: AtomicBool,
    /// The last probe and when it ran. The lock also makes probes single-flight.
    last_probe: Mutex<Option<(Instant, Verdict)>>,
}

/// The pool behind the gate. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Database {
    pool: PgPool,
    query_timeout: Duration,
    /// `DATABASE_URL` is a transaction pooler (see [`Session`]).
    pooled: bool,
    state: Arc<GateState>,
}

/// How a pinned session's transaction begins: one snapshot for all it reads, and nothing written.
const PINNED_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
/// Behind a transaction pooler, what a direct connection's startup settings would have set (see
/// `tickpipe_common::db::read_only_pool`), and no statement named by an earlier client of the
/// pooler's server connection in the way (sqlx names its statements per client connection).
const PINNED_SETUP: &str = "DEALLOCATE ALL; SET LOCAL jit = off";

/// The connection one [`Database::run`] works on, dereferencing to it. Behind a transaction
/// pooler (PgBouncer, Neon's and Supabase's pooled endpoints) every query runs inside a
/// transaction: between two of its protocol messages outside one, the pooler may hand the
/// server connection to another client, and sqlx prepares a statement and executes it in two.
/// The transaction rolls back when the session is dropped: it is read-only, so that ends it
/// the way a commit would.
pub(crate) enum Session {
    Connection(PoolConnection<Postgres>),
    Pinned(Transaction<'static, Postgres>),
}

impl Deref for Session {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Self::Connection(connection) => connection,
            Self::Pinned(transaction) => transaction,
        }
    }
}

impl DerefMut for Session {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Self::Connection(connection) => connection,
            Self::Pinned(transaction) => transaction,
        }
    }
}

impl Database {
    /// `pooled`: the pool's URL is a transaction pooler.
    pub(crate) fn new(pool: PgPool, query_timeout: Duration, pooled: bool) -> Self {
        Self {
            pool,
            query_timeout,
            pooled,
            state: Arc::default(),
        }
    }

    /// [`Self::run`] on one snapshot: every query of `query` sees the same committed state.
    pub(crate) async fn run_in_snapshot<T, Q, Fut>(
        &self,
        what: &'static str,
        query: Q,
    ) -> Result<T, ApiError>
    where
        Q: FnOnce(Session) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        self.call(what, true, query).await
    }

    /// Runs `query` on a pooled connection, all within the query timeout. Errors are already
    /// classified: 503 when the database is unreachable or too slow, 500 otherwise. Each call is a
    /// `database` span (named by `what`) with one debug line: the wait for a connection and the
    /// query's own time.
    pub(crate) async fn run<T, Q, Fut>(&self, what: &'static str, query: Q) -> Result<T, ApiError>
    where
        Q: FnOnce(Session) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        self.call(what, false, query).await
    }

    /// A session: a transaction when pooled or `snapshot`, otherwise the connection as it is.
    async fn open(&self, snapshot: bool) -> Result<Session, sqlx::Error> {
        if !(self.pooled || snapshot) {
            return Ok(Session::Connection(self.pool.acquire().await?));
        }
        let mut transaction = self.pool.begin_with(PINNED_BEGIN).await?;
        if self.pooled {
            transaction.execute(PINNED_SETUP).await?;
        }
        Ok(Session::Pinned(transaction))
    }

    #[tracing::instrument(name = "database", skip_all, fields(what = what))]
    async fn call<T, Q, Fut>(
        &self,
        what: &'static str,
        snapshot: bool,
        query: Q,
    ) -> Result<T, ApiError>
    where
        Q: FnOnce(Session) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        if self.state.closed.load(Ordering::Acquire) {
            self.ensure_recovery();
            tracing::debug!("the database refuses connections; not waiting for the pool");
            return Err(refusing());
        }
        let started = Instant::now();
        let deadline = started + self.query_timeout;
        let acquired = self.acquire(what, snapshot, deadline).await;
        let waited = started.elapsed();
        let result = match acquired {
            Ok(connection) => match tokio::time::timeout_at(deadline, query(connection)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(self.classify(error).await),
                Err(_) => Err(self.timed_out(what)),
            },
            Err(error) => Err(error),
        };
        tracing::debug!(
            acquire_ms = millis(waited),
            query_ms = millis(started.elapsed().saturating_sub(waited)),
            ok = result.is_ok(),
            "database call"
        );
        result
    }

    /// A pooled connection before `deadline`. If none comes within [`PROBE_AFTER`], a probe asks
    /// whether the server refuses connections; if it does, the gate closes and this is a 503 at once.
    async fn acquire(
        &self,
        what: &str,
        snapshot: bool,
        deadline: Instant,
    ) -> Result<Session, ApiError> {
        let acquire = tokio::time::timeout_at(deadline, self.open(snapshot));
        tokio::pin!(acquire);
        let watchdog = async {
            // While every connection of the pool is open, the wait is for one of them to be
            // returned: the server accepted them all, and one that broke since fails its query,
            // which probes. Only a pool still opening connections may be waiting on a server that
            // refuses them. (Probing regardless cost a fresh connection, with its authentication,
            // every `PROBE_REUSE` under a load that keeps the pool busy.)
            loop {
                tokio::time::sleep(PROBE_AFTER).await;
                if self.pool.size() < self.pool.options().get_max_connections() {
                    break self.probe().await;
                }
            }
        };
        let acquired = tokio::select! {
            biased;
            acquired = &mut acquire => acquired,
            verdict = watchdog => {
                if verdict == Verdict::Refusing {
                    self.close();
                    return Err(refusing());
                }
                acquire.await
            }
        };
        match acquired {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(self.classify(error).await),
            Err(_) => Err(self.timed_out(what)),
        }
    }

    fn timed_out(&self, what: &str) -> ApiError {
        ApiError::Unavailable(format!("{what} exceeded {:?}", self.query_timeout))
    }

    /// A connection error may mean the server just went away: probe, so that the next requests
    /// answer at once instead of each waiting for the pool.
    async fn classify(&self, error: sqlx::Error) -> ApiError {
        if tickpipe_common::db::is_connection_error(&error)
            && self.probe().await == Verdict::Refusing
        {
            self.close();
        }
        ApiError::from_database(error)
    }

    /// The last probe's verdict if recent, else a new probe. Concurrent callers share one probe.
    #[tracing::instrument(name = "probe", skip_all)]
    async fn probe(&self) -> Verdict {
        let mut last = self.state.last_probe.lock().await;
        if let Some((at, verdict)) = *last {
            if at.elapsed() < PROBE_REUSE {
                return verdict;
            }
        }
        let started = Instant::now();
        let verdict = probe_once(&self.pool.connect_options()).await;
        tracing::debug!(
            ?verdict,
            elapsed_ms = millis(started.elapsed()),
            "probed the database"
        );
        *last = Some((Instant::now(), verdict));
        verdict
    }

    fn close(&self) {
        if !self.state.closed.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "the database refuses connections; answering 503 at once until a connection succeeds"
            );
        }
        self.ensure_recovery();
    }

    /// Starts the background reconnection unless one is running.
    fn ensure_recovery(&self) {
        if self.state.recovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let database = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RECOVERY_INTERVAL).await;
                let verdict = probe_once(&database.pool.connect_options()).await;
                *database.state.last_probe.lock().await = Some((Instant::now(), verdict));
                if verdict == Verdict::Accepting {
                    break;
                }
            }
            // Open before clearing `recovering`: a request that closes the gate in between finds
            // `recovering` still set, and the next request in the closed state restarts the task.
            database.state.closed.store(false, Ordering::Release);
            database.state.recovering.store(false, Ordering::Release);
            tracing::info!("the database accepts connections again");
        });
    }
}

/// A duration in milliseconds with microsecond resolution, for the logs.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

fn refusing() -> ApiError {
    ApiError::Unavailable("the database refuses connections".to_owned())
}

/// One direct connection attempt, bounded by [`PROBE_TIMEOUT`]; the connection is closed again.
async fn probe_once(options: &PgConnectOptions) -> Verdict {
    match tokio::time::timeout(PROBE_TIMEOUT, options.connect()).await {
        Ok(Ok(connection)) => {
            // Closing politely waits for the server; nobody needs to wait for that.
            tokio::spawn(async move {
                let _ = connection.close().await;
            });
            Verdict::Accepting
        }
        Ok(Err(error)) => verdict_of(&error),
        Err(_) => Verdict::Unknown,
    }
}

fn verdict_of(error: &sqlx::Error) -> Verdict {
    match error {
        sqlx::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            Verdict::Refusing
        }
        // 57P01-57P03: shutting down, or not yet accepting connections while starting up.
        sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("57P")) => {
            Verdict::Refusing
        }
        _ => Verdict::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_port_is_refusing() {
        // Bind and drop a listener: nothing listens on that port afterwards.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let options = PgConnectOptions::new().host("127.0.0.1").port(port);
        assert_eq!(probe_once(&options).await, Verdict::Refusing);
    }

    #[tokio::test]
    async fn a_missing_socket_is_refusing() {
        let options = PgConnectOptions::new().socket("/nonexistent/tickpipe");
        assert_eq!(probe_once(&options).await, Verdict::Refusing);
    }

    #[tokio::test]
    async fn a_silent_server_is_unknown() {
        // Accepts TCP but never answers the startup message: the probe times out.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let options = PgConnectOptions::new().host("127.0.0.1").port(port);
        assert_eq!(probe_once(&options).await, Verdict::Unknown);
        drop(listener);
    }
}
