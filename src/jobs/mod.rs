//! Background work that runs in `serve` (unless `--no-workers`) and in `logbook worker`: apalis
//! workers (one queue per task type, SQL storage in the application's own database), the daily
//! retention schedule, the search indexer, and a sweeper that re-queues any scheduled task whose job
//! was lost (the process died between committing the task and queueing its job).
//!
//! Jobs carry a task id only; the task projection holds everything else, and the task's fenced
//! steps (see `services::tasks`) make a job that runs twice harmless.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use apalis::layers::WorkerBuilderExt;
use apalis::prelude::{Attempt, BackendExt, BoxDynError, Data, TaskBuilder, WorkerBuilder};
use apalis_cron::{CronScheduler, Tick};
use prometheus_client::metrics::counter::Counter;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

mod dispatch;
mod polling;

pub use crate::domain::job::{DeliveryJob, TaskJob};
pub use dispatch::Dispatcher;
use polling::Wakeups;

use crate::config::Settings;
use crate::domain::task::{TaskStatus, TaskType};
use crate::domain::time::now_ms;
use crate::event_log::EventStore;
use crate::metrics::Metrics;
use crate::projections::search::{SearchIndex, SearchIndexer};
use crate::services::delivery::{Deliverer, Prepared};
use crate::services::tasks::{StepError, TaskRun};
use crate::services::{erasure, exports, imports, retention, sendouts, tasks};

/// Events the search indexer takes per transaction (it writes to storage of its own, so a large
/// batch holds no other writer back).
const SEARCH_BATCH: u64 = 2048;
/// How long the indexer waits once it has caught up: what a busy API logs meanwhile is indexed as
/// one batch, one FTS5 segment to merge later and a few round trips, instead of one of each per
/// group commit. Searches still see these logs meanwhile, scanning them as the not-yet-indexed tail.
const SEARCH_PAUSE: Duration = Duration::from_millis(250);
/// How long a caught-up indexer waits for a commit before it looks anyway (for a gap in the log
/// that it skips once it has waited long enough, see `projections::search`).
const SEARCH_IDLE_LOOK: Duration = Duration::from_secs(2);
/// Runs of a task's job before it gives up: a step that fails on a storage error is retried (a
/// step resumes from the task's checkpoint), and the last failure fails the task.
const TASK_ATTEMPTS: usize = 10;
/// The longest wait between tries to record a given-up task as failed.
const GIVE_UP_RETRY_MAX: Duration = Duration::from_secs(60);
/// The task types that have a worker so far.
const QUEUES: &[TaskType] = &[TaskType::Import, TaskType::Export, TaskType::RetentionPurge, TaskType::WebhookRecovery, TaskType::CustomerErasure];
/// How often a task worker looks for jobs while its queue yields some, and once it is idle (a job
/// queued on this node, or on another through PostgreSQL, wakes it at once; see `polling`).
const POLL: Duration = Duration::from_millis(200);
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Deliveries are polled for more often: publish-to-first-attempt latency is a promise. An idle
/// delivery queue is still looked at every second, for retries that came due.
const DELIVERY_POLL: Duration = Duration::from_millis(20);
const DELIVERY_IDLE_POLL: Duration = Duration::from_secs(1);
/// Delivery jobs one poll claims (the worker takes more only as its `LOGBOOK_DELIVERY_CONCURRENCY`
/// slots free up).
const DELIVERY_BATCH: usize = 200;
// Delivery jobs are not moved to `Running` after being claimed (apalis' `lock_tasks`): the claim
// already names the worker, and a dead worker's claimed jobs are taken over all the same. One write
// less per batch.
/// A scheduled task without a running job for this long is queued again...
const SWEEP_AFTER_MS: i64 = 10_000;
/// ...and a sendout due for longer than a handed-over attempt can take to start, run and be
/// recorded (`HANDOFF_MAX_WAIT` + the webhook timeout + this): by then it was lost in a crash.
/// (Queueing one that waits in the durable queue is a no-op: the job's key is the attempt's.)
const SWEEP_DELIVERIES_MARGIN: Duration = Duration::from_secs(5);

const DELIVERY_QUEUE: &str = "logbook.delivery";
/// Finished jobs are kept this long (to look at), then trimmed by the sweeper...
const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// ...this many per sweep at most.
const TRIM_BATCH: i64 = 20_000;

/// Queues jobs into apalis' tables (on PostgreSQL in the application's database, on SQLite in a
/// file of their own, see `db::connect_jobs`), and hands deliveries due now straight to this
/// process' delivery workers when it runs them and they have room.
#[derive(Clone)]
pub struct JobQueue {
    storage: Storage,
    handoff: Arc<OnceLock<mpsc::Sender<Handed>>>,
    wakeups: Wakeups,
}

#[derive(Clone)]
enum Storage {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// A delivery handed over in memory, and when.
struct Handed {
    job: DeliveryJob,
    at: Instant,
}

/// Deliveries handed over and not yet started, at most; more go to the durable queue.
const HANDOFF_QUEUE: usize = 4096;
/// A handed-over delivery not started within this long goes to the durable queue instead: the
/// sweeper, which knows nothing of this process' memory, counts on it (`SWEEP_DELIVERIES_MARGIN`).
const HANDOFF_MAX_WAIT: Duration = Duration::from_secs(5);

fn queue_name(task_type: TaskType) -> String {
    format!("logbook.{}", task_type.as_str())
}

impl JobQueue {
    /// Opens the queues (see `db::connect_jobs`) and creates or updates apalis' tables. (Not
    /// `SqliteStorage::setup`, which would also switch the connection to `synchronous = OFF`.)
    pub async fn open(db: &DatabaseConnection, settings: &Settings) -> anyhow::Result<Self> {
        let storage = match crate::db::connect_jobs(db, settings).await? {
            Some(pool) => Storage::Sqlite(pool),
            None => Storage::Postgres(db.get_postgres_connection_pool().clone()),
        };
        match &storage {
            Storage::Sqlite(pool) => apalis_sqlite::SqliteStorage::migrations().run(pool).await?,
            Storage::Postgres(pool) => apalis_postgres::PostgresStorage::migrations().run(pool).await?,
        }
        Ok(Self { storage, handoff: Arc::default(), wakeups: Wakeups::default() })
    }

    /// Queues the task's job. The job's idempotency key is the task id, so queueing twice (the
    /// sweeper after a crash) makes one job. A failure is only logged: the sweeper queues it later.
    pub async fn enqueue(&self, task_type: TaskType, task_id: &str) {
        if let Err(err) = self.push(task_type, task_id).await {
            tracing::warn!(task_id, error = %err, "queueing a job failed; the sweeper will retry");
        }
    }

    async fn push(&self, task_type: TaskType, task_id: &str) -> Result<(), BoxDynError> {
        let args = serde_json::to_vec(&TaskJob { task_id: task_id.to_owned() })?;
        let job = NewJob { args, key: task_id.to_owned(), max_attempts: TASK_ATTEMPTS as i32, delay: Duration::ZERO };
        self.push_all(&queue_name(task_type), vec![job]).await
    }

    /// Queues attempts due now: handed to this process' delivery workers if it runs them and they
    /// have room (no queue row, no poll: the attempt starts at once), else into the durable queue.
    /// A crash loses a handed-over attempt only until the sweeper queues its sendout again.
    pub async fn hand_over(&self, jobs: Vec<DeliveryJob>) {
        let Some(lane) = self.handoff.get() else { return self.enqueue_delivery_jobs(jobs, None).await };
        let mut rest = Vec::new();
        for job in jobs {
            if let Err(refused) = lane.try_send(Handed { job, at: Instant::now() }) {
                rest.push(refused.into_inner().job);
            }
        }
        self.enqueue_delivery_jobs(rest, None).await;
    }

    /// Queues delivery attempts, at `run_at_ms` or now. The idempotency key is the sendout and
    /// generation, so queueing one attempt twice makes one job. Failures are logged; the sweeper
    /// queues due sendouts again.
    pub async fn enqueue_delivery_jobs(&self, jobs: Vec<DeliveryJob>, run_at_ms: Option<i64>) {
        if jobs.is_empty() {
            return;
        }
        let delay = run_at_ms.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64)).unwrap_or_default();
        let mut tasks = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let Ok(args) = serde_json::to_vec(job) else { continue };
            tasks.push(NewJob { args, key: format!("{}:{}", job.sendout_id, job.generation), max_attempts: 5, delay });
        }
        let mut tasks = tasks.into_iter().peekable();
        while tasks.peek().is_some() {
            let chunk: Vec<NewJob> = tasks.by_ref().take(1000).collect();
            if let Err(err) = self.push_all(DELIVERY_QUEUE, chunk).await {
                tracing::warn!(error = %err, "queueing deliveries failed; the sweeper will retry");
            }
        }
    }

    /// Deletes finished jobs (done, or given up) older than [`KEEP_FINISHED`], a bounded number per
    /// call, so the queue's tables and their indexes stay the size of the work in hand rather than
    /// of everything ever queued. Returns how many it deleted. (Not apalis' `vacuum`, which also
    /// rewrites the whole SQLite file.)
    pub async fn trim_finished(&self) -> Result<u64, sqlx::Error> {
        let before_s = (now_ms() - KEEP_FINISHED.as_millis() as i64) / 1000;
        let deleted = match &self.storage {
            Storage::Sqlite(pool) => sqlx::query(
                "DELETE FROM Jobs WHERE rowid IN (SELECT rowid FROM Jobs WHERE status IN ('Done', 'Killed') AND done_at < ?1 LIMIT ?2)",
            )
            .bind(before_s)
            .bind(TRIM_BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
            Storage::Postgres(pool) => sqlx::query(
                "DELETE FROM apalis.jobs WHERE id IN (SELECT id FROM apalis.jobs \
                 WHERE status IN ('Done', 'Killed') AND done_at < to_timestamp($1) LIMIT $2)",
            )
            .bind(before_s as f64)
            .bind(TRIM_BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(deleted)
    }

    /// Queues `jobs`; one whose key is queued already is left out (so queueing is idempotent and
    /// one such job does not fail the rest).
    async fn push_all(&self, queue: &str, jobs: Vec<NewJob>) -> Result<(), BoxDynError> {
        let due_now = jobs.iter().any(|j| j.delay.is_zero());
        match &self.storage {
            // apalis' SQLite insert skips a key it has.
            Storage::Sqlite(pool) => {
                let tasks: Vec<_> = jobs
                    .into_iter()
                    .map(|j| TaskBuilder::new(j.args).idempotency_key(j.key).max_attempts(j.max_attempts as usize).run_after(j.delay).build())
                    .collect();
                let mut conn = pool.begin().await?;
                apalis_sqlite::queries::push_tasks(&mut *conn, queue, &tasks).await?;
                conn.commit().await?;
            }
            // apalis' PostgreSQL insert fails the whole batch on a key it has: this is its insert
            // (`queries/task/sink.sql`) with the conflict skipped.
            Storage::Postgres(pool) => {
                let now = now_ms();
                let ids: Vec<String> = jobs.iter().map(|_| ulid::Ulid::new().to_string()).collect();
                let run_at: Vec<f64> = jobs.iter().map(|j| (now + j.delay.as_millis() as i64) as f64 / 1000.0).collect();
                let max_attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
                let keys: Vec<String> = jobs.iter().map(|j| j.key.clone()).collect();
                let args: Vec<Vec<u8>> = jobs.into_iter().map(|j| j.args).collect();
                sqlx::query(
                    "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key) \
                     SELECT unnest($1::text[]), $2, unnest($3::bytea[]), 'Pending', 0, unnest($4::integer[]), \
                            to_timestamp(unnest($5::float8[])), 0, unnest($6::text[]) \
                     ON CONFLICT (job_type, idempotency_key) DO NOTHING",
                )
                .bind(ids)
                .bind(queue)
                .bind(args)
                .bind(max_attempts)
                .bind(run_at)
                .bind(keys)
                .execute(pool)
                .await?;
            }
        }
        if due_now {
            self.wakeups.queued(queue);
        }
        Ok(())
    }

    /// Hands the jobs claimed by `workers` back to the queue, as they were before the claim (no
    /// attempt used up), so that another worker takes them at once instead of after the lease.
    /// Returns how many.
    async fn release(&self, workers: &[String]) -> Result<u64, sqlx::Error> {
        let released = match &self.storage {
            Storage::Sqlite(pool) => sqlx::query(
                "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL \
                 WHERE lock_by IN (SELECT value FROM json_each(?1)) AND status IN ('Queued', 'Running')",
            )
            .bind(serde_json::to_string(workers).unwrap_or_default())
            .execute(pool)
            .await?
            .rows_affected(),
            Storage::Postgres(pool) => sqlx::query(
                "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL \
                 WHERE lock_by = ANY($1) AND status IN ('Queued', 'Running')",
            )
            .bind(workers)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(released)
    }
}

/// A job to queue: its arguments, the key that makes queueing it twice one job, how many times
/// it may run, and how long from now it waits.
struct NewJob {
    args: Vec<u8>,
    key: String,
    max_attempts: i32,
    delay: Duration,
}

/// What a job handler can reach.
#[derive(Clone)]
struct JobContext {
    store: EventStore,
    /// How long a sendout may stay due before the sweeper takes it for lost.
    lost_delivery_after: Duration,
    queue: JobQueue,
    deliverer: Arc<Deliverer>,
    delivery_concurrency: usize,
    /// Where queued delivery jobs have their reads batched (see [`run_reads`]).
    reads: mpsc::Sender<Read>,
    /// Turns true when the process begins to stop: no more jobs are taken.
    stopping: watch::Receiver<bool>,
    busy: Busy,
}

/// Background work of this process. [`Workers::shutdown`] stops it gracefully; dropping it stops
/// it at once (as a crash would: a job cut off mid-step loses only its uncommitted step, which the
/// next worker does again).
pub struct Workers {
    stopping: watch::Sender<bool>,
    /// Every loop of this process: each ends on its own once `stopping` is set, at a point where
    /// it holds no transaction (but the task workers, see `busy`).
    handles: Vec<JoinHandle<()>>,
    /// The task workers, whose jobs park rather than end when stopping (so that they are not
    /// acknowledged), and so are cut off once `busy` says none is inside a step.
    task_workers: Vec<JoinHandle<()>>,
    busy: Busy,
    /// This process' apalis worker names, whose claimed jobs are handed back on shutdown.
    names: Names,
    queue: JobQueue,
    /// Wakes the workers for jobs queued on other nodes (PostgreSQL).
    listening: Option<JoinHandle<()>>,
}

impl Workers {
    /// Stops taking jobs; lets each running task finish its current step and stop there; lets the
    /// deliveries in flight finish and be recorded; all for up to `grace`. Then hands every job
    /// this process still holds back to the queue, so that another worker takes it now rather
    /// than when the lease runs out.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stopping.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        let loops_ended = tokio::time::timeout_at(deadline, futures_util::future::join_all(self.handles.iter_mut())).await.is_ok();
        while !self.busy.idle() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let steps_ended = self.busy.idle();
        if !(loops_ended && steps_ended) {
            tracing::warn!(?grace, deliveries_ended = loops_ended, steps_ended, "work still under way after the shutdown grace was cut off; it will be done again");
        }
        self.task_workers.iter().chain(self.handles.iter()).chain(self.listening.iter()).for_each(JoinHandle::abort);
        // Cancelled ones end at their next await point; none may still write once the jobs are
        // handed back. (One that finished was polled to completion already.)
        for handle in self.task_workers.iter_mut().chain(self.handles.iter_mut()) {
            if !handle.is_finished() {
                let _ = handle.await;
            }
        }
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match self.queue.release(&names).await {
            Ok(released) => tracing::info!(released, "workers stopped; their claimed jobs are back in the queue"),
            Err(err) => tracing::warn!(error = %err, "handing claimed jobs back failed; other workers take them once the lease runs out"),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.task_workers.iter().chain(self.handles.iter()).chain(self.listening.iter()).for_each(JoinHandle::abort);
    }
}

/// How many task jobs of this process are running (not yet ended, nor parked for shutdown).
#[derive(Clone, Default)]
struct Busy(Arc<std::sync::atomic::AtomicUsize>);

/// One running task job; counted in [`Busy`] until dropped.
struct BusyGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Busy {
    fn enter(&self) -> BusyGuard {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        BusyGuard(self.0.clone())
    }

    fn idle(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst) == 0
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub fn start(store: EventStore, queue: JobQueue, metrics: Arc<Metrics>, settings: &Settings) -> anyhow::Result<Workers> {
    let indexed = Counter::default();
    metrics.register("search_indexed_events", "Events consumed by the log search indexer", indexed.clone());
    let schedule: cron::Schedule = settings.retention_schedule.parse()?;
    let deliverer = Arc::new(Deliverer::new(store.clone(), settings)?);
    let (stopping, stop_rx) = watch::channel(false);
    let (reads, pending_reads) = mpsc::channel(DELIVERY_BATCH * 4);
    // Not stopped with the rest: the deliveries finishing at shutdown still read through it.
    tokio::spawn(run_reads(deliverer.clone(), pending_reads));
    let ctx = JobContext {
        store: store.clone(),
        lost_delivery_after: HANDOFF_MAX_WAIT + settings.webhook_timeout + SWEEP_DELIVERIES_MARGIN,
        queue: queue.clone(),
        deliverer,
        delivery_concurrency: settings.delivery_concurrency as usize,
        reads,
        stopping: stop_rx.clone(),
        busy: Busy::default(),
    };
    let busy = ctx.busy.clone();
    let mut handles = vec![
        tokio::spawn(run_search_indexer(store.search().clone(), indexed, store.commits().subscribe(), stop_rx)),
        tokio::spawn(run_sweeper(ctx.clone())),
    ];
    let (lane, handed) = mpsc::channel(HANDOFF_QUEUE);
    if ctx.queue.handoff.set(lane).is_ok() {
        handles.push(tokio::spawn(run_handed_deliveries(ctx.clone(), handed)));
    }
    let listening = match &queue.storage {
        Storage::Postgres(pool) => Some(queue.wakeups.listen(pool.clone())),
        Storage::Sqlite(_) => None,
    };
    let spawned = spawn_workers(ctx, settings.job_lease, settings.task_concurrency as usize, schedule);
    handles.extend(spawned.others);
    Ok(Workers { stopping, handles, task_workers: spawned.tasks, busy, names: spawned.names, queue, listening })
}

/// The apalis workers of this process.
struct Spawned {
    tasks: Vec<JoinHandle<()>>,
    /// The delivery worker and the schedule.
    others: Vec<JoinHandle<()>>,
    names: Names,
}

/// Resolves once `stopping` turns true (or its sender is gone).
async fn stopped(mut stopping: watch::Receiver<bool>) -> Result<(), std::io::Error> {
    let _ = stopping.wait_for(|s| *s).await;
    Ok(())
}

/// The apalis worker names this process has used; their claimed jobs are handed back when it
/// stops.
type Names = Arc<std::sync::Mutex<Vec<String>>>;

/// Runs the worker that `run` builds and runs under a given name, until it ends. apalis ends a
/// worker whose poll fails (the database went away, say): it is then built again under a new
/// name, after a pause (0.5 s doubling to 30 s), once the jobs the old one had claimed are handed
/// back (a new name, because the old one's heartbeat lock may outlive it on a pooled connection).
async fn supervise<F, Fut>(ctx: JobContext, base: String, names: Names, mut run: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), apalis::prelude::WorkerError>>,
{
    let mut stopping = ctx.stopping.clone();
    let mut delay = Duration::from_millis(500);
    for generation in 0.. {
        let name = if generation == 0 { base.clone() } else { format!("{base}.{generation}") };
        names.lock().unwrap_or_else(|e| e.into_inner()).push(name.clone());
        let started = Instant::now();
        let Err(err) = run(name.clone()).await else { return };
        if started.elapsed() > Duration::from_secs(60) {
            delay = Duration::from_millis(500);
        }
        tracing::warn!(worker = name, error = %err, retry_in = ?delay, "job worker stopped on an error; starting it again");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
        if let Err(err) = ctx.queue.release(&[name]).await {
            tracing::warn!(error = %err, "handing a stopped worker's jobs back failed; they come back when its lease runs out");
        }
    }
}

/// One apalis worker per queue on this process, each in a task of its own, plus the daily
/// retention schedule.
fn spawn_workers(ctx: JobContext, lease: Duration, task_concurrency: usize, schedule: cron::Schedule) -> Spawned {
    // Worker names are unique per process, so a restarted node never inherits a dead one's jobs by
    // name: they come back when the dead worker's heartbeat is older than the lease.
    let node = crate::domain::ids::new_id(crate::domain::ids::IdKind::Task).replacen("task_", "", 1);
    let heartbeat = lease / 3;
    let names = Names::default();
    let mut tasks = Vec::new();
    for &task_type in QUEUES {
        let base = format!("{}@{node}", queue_name(task_type));
        let (c, storage) = (ctx.clone(), ctx.queue.storage.clone());
        // Task jobs park rather than end when stopping (see `run_task`), so this worker is not
        // run until stopped but cut off (see `Workers::shutdown`).
        tasks.push(tokio::spawn(supervise(ctx.clone(), base, names.clone(), move |name| {
            let (c, storage) = (c.clone(), storage.clone());
            let queue = queue_name(task_type);
            async move {
                match storage {
                    Storage::Sqlite(pool) => {
                        let config = apalis_sqlite::Config::default().queue(queue.clone()).heartbeat_interval(heartbeat).missed_heartbeats(3).batch_size(1);
                        let backend = apalis_sqlite::SqliteStorage::<TaskJob>::new(&pool).with_config(config).poll_with_strategy(c.queue.wakeups.polling(&queue, POLL, IDLE_POLL));
                        WorkerBuilder::new(name).backend(backend).concurrency(task_concurrency).data(c).build(run_task).run().await
                    }
                    Storage::Postgres(pool) => {
                        let config = apalis_postgres::Config::default().queue(queue.clone()).heartbeat_interval(heartbeat).missed_heartbeats(3).batch_size(1);
                        let backend = apalis_postgres::PostgresStorage::<TaskJob>::new(&pool).with_config(config).poll_with_strategy(c.queue.wakeups.polling(&queue, POLL, IDLE_POLL));
                        WorkerBuilder::new(name).backend(backend).concurrency(task_concurrency).data(c).build(run_task).run().await
                    }
                }
            }
        })));
    }
    // Stopping, it takes no more jobs and finishes those it holds (see `Workers::shutdown`).
    let concurrency = ctx.delivery_concurrency;
    let (c, storage) = (ctx.clone(), ctx.queue.storage.clone());
    let delivery = tokio::spawn(supervise(ctx.clone(), format!("{DELIVERY_QUEUE}@{node}"), names.clone(), move |name| {
        let (c, storage) = (c.clone(), storage.clone());
        async move {
            let stop = stopped(c.stopping.clone());
            match storage {
                Storage::Sqlite(pool) => {
                    let config = apalis_sqlite::Config::default()
                        .queue(DELIVERY_QUEUE)
                        .heartbeat_interval(heartbeat)
                        .missed_heartbeats(3)
                        .batch_size(DELIVERY_BATCH)
                        .lock_tasks(false);
                    let backend = apalis_sqlite::SqliteStorage::<DeliveryJob>::new(&pool).with_config(config).poll_with_strategy(c.queue.wakeups.polling(DELIVERY_QUEUE, DELIVERY_POLL, DELIVERY_IDLE_POLL));
                    WorkerBuilder::new(name).backend(backend).concurrency(concurrency).data(c).build(run_delivery).run_until(stop).await
                }
                Storage::Postgres(pool) => {
                    let config = apalis_postgres::Config::default()
                        .queue(DELIVERY_QUEUE)
                        .heartbeat_interval(heartbeat)
                        .missed_heartbeats(3)
                        .batch_size(DELIVERY_BATCH)
                        .lock_tasks(false);
                    let backend = apalis_postgres::PostgresStorage::<DeliveryJob>::new(&pool).with_config(config).poll_with_strategy(c.queue.wakeups.polling(DELIVERY_QUEUE, DELIVERY_POLL, DELIVERY_IDLE_POLL));
                    WorkerBuilder::new(name).backend(backend).concurrency(concurrency).data(c).build(run_delivery).run_until(stop).await
                }
            }
        }
    }));
    let c = ctx.clone();
    let schedule = tokio::spawn(supervise(ctx, format!("logbook.retention_daily@{node}"), names.clone(), move |name| {
        let (c, schedule) = (c.clone(), schedule.clone());
        async move {
            let stop = stopped(c.stopping.clone());
            WorkerBuilder::new(name).backend(CronScheduler::new(schedule)).data(c).build(daily_retention).run_until(stop).await
        }
    }));
    Spawned { tasks, others: vec![delivery, schedule], names }
}

/// Makes the attempts handed over in memory: read in batches (three queries per batch), then each
/// made in a task of its own, at most `LOGBOOK_DELIVERY_CONCURRENCY` at once. What cannot start
/// soon, or waits for an endpoint's rate limit, or fails to be recorded, goes to the durable queue.
/// Stopping, it lets the attempts in flight finish and puts what was handed over but not started
/// into the durable queue.
async fn run_handed_deliveries(ctx: JobContext, mut handed: mpsc::Receiver<Handed>) {
    let slots = Arc::new(Semaphore::new(ctx.delivery_concurrency));
    let mut batch = Vec::with_capacity(DELIVERY_BATCH);
    let mut stop = std::pin::pin!(stopped(ctx.stopping.clone()));
    loop {
        let received = tokio::select! {
            n = handed.recv_many(&mut batch, DELIVERY_BATCH) => n,
            _ = &mut stop => break,
        };
        if received == 0 {
            break;
        }
        let (fresh, late): (Vec<Handed>, Vec<Handed>) = batch.drain(..).partition(|h| h.at.elapsed() < HANDOFF_MAX_WAIT);
        ctx.queue.enqueue_delivery_jobs(late.into_iter().map(|h| h.job).collect(), None).await;
        let Some(at) = fresh.iter().map(|h| h.at).min() else { continue };
        let jobs: Vec<DeliveryJob> = fresh.into_iter().map(|h| h.job).collect();
        let prepared = match ctx.deliverer.prepare(jobs.clone()).await {
            Ok(prepared) => prepared,
            Err(err) => {
                tracing::warn!(error = %err, "reading deliveries failed; they go to the queue");
                ctx.queue.enqueue_delivery_jobs(jobs, None).await;
                continue;
            }
        };
        let (limited, prepared): (Vec<_>, Vec<_>) = prepared.into_iter().partition(|p| p.rate_limited());
        ctx.queue.enqueue_delivery_jobs(limited.into_iter().map(|p| p.job).collect(), None).await;
        for p in prepared {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            if at.elapsed() >= HANDOFF_MAX_WAIT || *ctx.stopping.borrow() {
                ctx.queue.enqueue_delivery_jobs(vec![p.job], None).await;
                continue;
            }
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let job = p.job.clone();
                if let Err(err) = ctx.deliverer.attempt(p).await {
                    tracing::warn!(sendout_id = job.sendout_id, error = %err, "recording a delivery failed; it goes to the queue");
                    ctx.queue.enqueue_delivery_jobs(vec![job], None).await;
                }
                drop(slot);
            });
        }
    }
    // Stopping: nothing more is handed over (`hand_over` finds the lane closed and queues).
    handed.close();
    let mut rest = Vec::new();
    while let Some(h) = handed.recv().await {
        rest.push(h.job);
    }
    ctx.queue.enqueue_delivery_jobs(rest, None).await;
    let _ = slots.acquire_many(ctx.delivery_concurrency as u32).await;
}

/// A queued delivery job waiting for what its attempt needs, read with the others waiting
/// meanwhile (see [`run_reads`]): `None` when its sendout moved on (retried, or attempted already).
struct Read {
    job: DeliveryJob,
    done: oneshot::Sender<Result<Option<Prepared>, String>>,
}

async fn run_delivery(job: DeliveryJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let (done, read) = oneshot::channel();
    ctx.reads.send(Read { job, done }).await.map_err(|_| "the delivery reader stopped")?;
    match read.await? {
        Ok(Some(prepared)) => ctx.deliverer.attempt(prepared).await.map_err(Into::into),
        Ok(None) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Reads what queued deliveries need in batches: the jobs a worker runs at once each wait here,
/// and every job that arrives while a batch is read goes into the next, so a batch costs three
/// queries rather than three per delivery. Ends when every sender is gone.
async fn run_reads(deliverer: Arc<Deliverer>, mut reads: mpsc::Receiver<Read>) {
    let mut batch = Vec::with_capacity(DELIVERY_BATCH);
    while reads.recv_many(&mut batch, DELIVERY_BATCH).await > 0 {
        let jobs: Vec<DeliveryJob> = batch.iter().map(|r| r.job.clone()).collect();
        match deliverer.prepare(jobs).await {
            Ok(prepared) => {
                let mut by_job: HashMap<(String, i32), Prepared> =
                    prepared.into_iter().map(|p| ((p.job.sendout_id.clone(), p.job.generation), p)).collect();
                for read in batch.drain(..) {
                    let _ = read.done.send(Ok(by_job.remove(&(read.job.sendout_id, read.job.generation))));
                }
            }
            Err(err) => {
                let message = err.to_string();
                for read in batch.drain(..) {
                    let _ = read.done.send(Err(message.clone()));
                }
            }
        }
    }
}

async fn run_task(job: TaskJob, attempt: Attempt, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let busy = ctx.busy.enter();
    let Some(run) = TaskRun::start(&ctx.store, &job.task_id).await? else { return Ok(()) };
    let run = run.stops_with(ctx.stopping.clone());
    let outcome = match TaskType::parse(&run.task.task_type) {
        Ok(TaskType::Import) => imports::run(&ctx.store, run).await,
        Ok(TaskType::Export) => exports::run(&ctx.store, run).await,
        Ok(TaskType::RetentionPurge) => retention::run(&ctx.store, run).await,
        Ok(TaskType::WebhookRecovery) => sendouts::run_recovery(&ctx.store, run).await,
        Ok(TaskType::CustomerErasure) => erasure::run(&ctx.store, run).await,
        _ => {
            let mut run = run;
            run.fail(Vec::new(), "this task type has no worker yet".into()).await
        }
    };
    match outcome {
        // Cancelled or taken over: nothing left for this job.
        Ok(()) | Err(StepError::Lost) => Ok(()),
        // Stopped between steps: the job is not acknowledged but parked until the process
        // hands it back to the queue (see `Workers::shutdown`).
        Err(StepError::Stopping) => {
            drop(busy);
            std::future::pending().await
        }
        // Trying again would fail the same way.
        Err(err @ StepError::Refused(_)) => {
            tracing::warn!(task_id = job.task_id, error = %err, "the task cannot be done; it fails");
            give_up(&ctx, &job.task_id, err.reason()).await;
            Ok(())
        }
        // Without this the task would stay `in_progress` with no job left to run it.
        Err(err) if attempt.current() >= TASK_ATTEMPTS => {
            tracing::error!(task_id = job.task_id, error = %err, attempts = TASK_ATTEMPTS, "task step failed on its last attempt; the task fails");
            let message = match &err {
                StepError::NotYet(why) => format!("The task was tried {TASK_ATTEMPTS} times and given up: {why}."),
                _ => format!("The task failed {TASK_ATTEMPTS} times on a storage error and was given up; the server log has the cause."),
            };
            give_up(&ctx, &job.task_id, message).await;
            Ok(())
        }
        Err(err) => {
            tracing::warn!(task_id = job.task_id, error = %err, "task step failed; the job will be retried");
            Err(Box::new(err))
        }
    }
}

/// Records a given-up task as failed. The database may still be failing (that is why the job gave
/// up), so the record is retried, 1 s to a minute apart, until it lands: the task must not stay
/// `in_progress` with no job left to run it. The job keeps its worker slot meanwhile, so a process
/// that dies here leaves the job to be taken over and given up again.
async fn give_up(ctx: &JobContext, task_id: &str, message: String) {
    let mut delay = Duration::from_secs(1);
    loop {
        match tasks::give_up(&ctx.store, task_id, message.clone()).await {
            Ok(()) | Err(StepError::Lost | StepError::Stopping) => return,
            Err(err) => {
                tracing::warn!(task_id, error = %err, retry_in = ?delay, "recording a given-up task as failed failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(GIVE_UP_RETRY_MAX);
            }
        }
    }
}

async fn daily_retention(tick: Tick, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let day = chrono::DateTime::from_timestamp(tick.get_timestamp() as i64, 0).unwrap_or_default().format("%Y-%m-%d").to_string();
    let scheduled = retention::daily(&ctx.store, day.clone()).await?;
    tracing::info!(day, projects = scheduled, "daily retention purge scheduled");
    Ok(())
}

/// Re-queues scheduled tasks whose job went missing, and clears abandoned uploads.
async fn run_sweeper(ctx: JobContext) {
    let mut stop = ctx.stopping.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let stale: Result<Vec<(String, String)>, _> = entity::task::Entity::find()
            .select_only()
            .columns([entity::task::Column::Id, entity::task::Column::TaskType])
            .filter(entity::task::Column::Status.eq(TaskStatus::Scheduled.as_str()))
            .filter(entity::task::Column::CreatedAtMs.lt(now_ms() - SWEEP_AFTER_MS))
            .limit(100)
            .into_tuple()
            .all(ctx.store.db())
            .await;
        for (id, task_type) in stale.unwrap_or_default() {
            if let Ok(task_type) = TaskType::parse(&task_type) {
                ctx.queue.enqueue(task_type, &id).await;
            }
        }
        requeue_due_deliveries(&ctx).await;
        if let Err(err) = ctx.queue.trim_finished().await {
            tracing::warn!(error = %err, "trimming finished jobs failed");
        }
        if let Err(err) = retention::remove_abandoned_uploads(&ctx.store).await {
            tracing::warn!(error = %err, "removing abandoned uploads failed");
        }
    }
}

/// Sendouts due for a while without their attempt: the process died between committing them and
/// queueing the job. Queueing again is harmless (the job's idempotency key is the attempt's).
async fn requeue_due_deliveries(ctx: &JobContext) {
    let due: Result<Vec<(String, i32)>, _> = entity::sendout::Entity::find()
        .select_only()
        .columns([entity::sendout::Column::Id, entity::sendout::Column::Generation])
        .filter(entity::sendout::Column::NextAttemptAtMs.lt(now_ms() - ctx.lost_delivery_after.as_millis() as i64))
        .limit(1000)
        .into_tuple()
        .all(ctx.store.db())
        .await;
    let jobs = due.unwrap_or_default().into_iter().map(|(sendout_id, generation)| DeliveryJob { sendout_id, generation, manual: false }).collect();
    ctx.queue.enqueue_delivery_jobs(jobs, None).await;
}

async fn run_search_indexer(index: SearchIndex, indexed: Counter, mut commits: watch::Receiver<u64>, mut stop: watch::Receiver<bool>) {
    let mut indexer = SearchIndexer::default();
    loop {
        // From here on a commit counts, so one made while this step reads is not missed.
        commits.mark_unchanged();
        let caught_up = match indexer.step(&index, SEARCH_BATCH).await {
            Ok(n) => {
                indexed.inc_by(n as u64);
                (n as u64) < SEARCH_BATCH
            }
            Err(err) => {
                tracing::warn!(error = %err, "search indexing failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
        };
        if caught_up {
            // Nothing to do until something is committed (here or on another node), then a pause
            // gathers what commits meanwhile. A gap waiting to be skipped is looked at anyway.
            tokio::select! {
                _ = tokio::time::timeout(SEARCH_IDLE_LOOK, commits.changed()) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // Stops between batches, never inside one's transaction.
            tokio::select! {
                _ = tokio::time::sleep(SEARCH_PAUSE) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        } else if *stop.borrow() {
            return;
        }
    }
}
