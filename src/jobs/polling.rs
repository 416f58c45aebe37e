//! When a worker looks for jobs. A queue that keeps yielding jobs is polled often; an idle one
//! rarely, and woken at once when a job due now is queued for it: by this process directly, by
//! other nodes through the notification apalis' insert trigger sends (PostgreSQL). An idle node
//! so makes a few queries a second instead of one per queue every few milliseconds, and a job
//! queued on another node starts without waiting for a poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{PollSnapshot, PollStrategy};
use futures_util::task::AtomicWaker;
use tokio::time::{Instant, Sleep};

/// The channel apalis' insert trigger notifies, with `{"job_type": <queue>, ...}`, for a job due now.
const INSERTED: &str = "apalis::job::insert";

/// A queue counts as busy this long after a poll last found jobs in it.
const BUSY_FOR: Duration = Duration::from_secs(1);

/// One queue's wake-ups. Polling a woken worker makes it fetch at once, so wake-ups (one per job
/// queued, on a busy cluster hundreds a second) are spaced by the queue's busy period: one is sent
/// at once, the next no sooner than that after it, and those in between merge into it. A busy
/// queue's worker, which looks every busy period anyway, is not woken at all.
struct Wake {
    waker: AtomicWaker,
    /// The worker looks every busy period.
    fast: AtomicBool,
    /// A wake-up is waiting for its moment.
    scheduled: AtomicBool,
    last: Mutex<Instant>,
    busy: Duration,
}

impl Wake {
    fn new(busy: Duration) -> Self {
        Self { waker: AtomicWaker::new(), fast: AtomicBool::new(false), scheduled: AtomicBool::new(false), last: Mutex::new(Instant::now().checked_sub(busy).unwrap_or_else(Instant::now)), busy }
    }

    fn wake(self: &Arc<Self>) {
        if self.fast.load(Ordering::SeqCst) || self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let wait = self.busy.saturating_sub(self.last.lock().unwrap_or_else(PoisonError::into_inner).elapsed());
        let wake = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            *wake.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
            wake.scheduled.store(false, Ordering::SeqCst);
            wake.waker.wake();
        });
    }
}

/// The wake-ups of this process' queues, by queue name.
#[derive(Clone, Default)]
pub struct Wakeups {
    queues: Arc<Mutex<HashMap<String, Arc<Wake>>>>,
}

impl Wakeups {
    fn of(&self, queue: &str, busy: Duration) -> Arc<Wake> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner).entry(queue.to_owned()).or_insert_with(|| Arc::new(Wake::new(busy))).clone()
    }

    /// A job due now was queued in `queue`.
    pub fn queued(&self, queue: &str) {
        let wake = self.queues.lock().unwrap_or_else(PoisonError::into_inner).get(queue).cloned();
        if let Some(wake) = wake {
            wake.wake();
        }
    }

    fn all(&self) {
        let wakes: Vec<Arc<Wake>> = self.queues.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        for wake in wakes {
            wake.wake();
        }
    }

    /// Wakes this process' workers for jobs other nodes queue; every queue when the listening
    /// connection was (re-)established, since what was queued meanwhile went unheard.
    pub fn listen(&self, pool: sqlx::PgPool) -> tokio::task::JoinHandle<()> {
        #[derive(serde::Deserialize)]
        struct Inserted {
            job_type: String,
        }
        let wakeups = self.clone();
        crate::db::listen(pool, &[INSERTED], move |notification| match notification {
            Some(n) => {
                if let Ok(inserted) = serde_json::from_str::<Inserted>(n.payload()) {
                    wakeups.queued(&inserted.job_type);
                }
            }
            None => wakeups.all(),
        })
    }

    /// The polling of `queue`: every `busy` while it yields jobs, every `idle` otherwise, and on
    /// a wake-up (see [`Wake`]).
    pub fn polling(&self, queue: &str, busy: Duration, idle: Duration) -> Polling {
        Polling { busy, idle, wake: self.of(queue, busy), sleep: Box::pin(tokio::time::sleep(idle)), found: 0, found_at: None }
    }
}

/// A worker's poll strategy (see [`Wakeups::polling`]). (apalis' own `IntervalStrategy` re-arms its
/// timer without polling it, so a worker whose fetch completes at once is never woken again.)
pub struct Polling {
    busy: Duration,
    idle: Duration,
    wake: Arc<Wake>,
    sleep: std::pin::Pin<Box<Sleep>>,
    /// Jobs the worker's polls have yielded, and when the count last grew.
    found: u64,
    found_at: Option<Instant>,
}

impl Polling {
    fn period(&self) -> Duration {
        if self.found_at.is_some_and(|at| at.elapsed() < BUSY_FOR) { self.busy } else { self.idle }
    }
}

impl PollStrategy for Polling {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        self.wake.waker.register(cx.waker());
        let mut fired = false;
        // Re-arming and polling again registers the waker for the next tick.
        while self.sleep.as_mut().poll(cx).is_ready() {
            fired = true;
            let period = self.period();
            self.wake.fast.store(period == self.busy, Ordering::SeqCst);
            self.sleep.as_mut().reset(Instant::now() + period);
        }
        if fired { Poll::Ready(Some(())) } else { Poll::Pending }
    }

    /// Finding jobs makes the queue busy: the next look comes within `busy`, not at the idle tick
    /// armed before.
    fn on_poll(&mut self, snapshot: &PollSnapshot) {
        if snapshot.total_ready > self.found {
            self.found = snapshot.total_ready;
            let now = Instant::now();
            self.found_at = Some(now);
            self.wake.fast.store(true, Ordering::SeqCst);
            if now + self.busy < self.sleep.deadline() {
                self.sleep.as_mut().reset(now + self.busy);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::AtomicUsize;

    fn poll_once(polling: &mut Polling) -> bool {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        polling.poll_drive(&mut cx, &PollSnapshot::default()).is_ready()
    }

    /// How long until the next look.
    fn next_in(polling: &Polling) -> Duration {
        polling.sleep.deadline().saturating_duration_since(Instant::now())
    }

    #[tokio::test]
    async fn an_idle_queue_is_looked_at_rarely_and_a_busy_one_often() {
        let (busy, idle) = (Duration::from_millis(20), Duration::from_secs(10));
        let mut polling = Wakeups::default().polling("q", busy, idle);
        assert!(!poll_once(&mut polling));
        assert!(next_in(&polling) > Duration::from_secs(9), "idle: the next look is an idle period away");
        // Jobs found: the queue is busy, looked at every busy period.
        polling.on_poll(&PollSnapshot { total_ready: 3, ..PollSnapshot::default() });
        assert!(next_in(&polling) <= busy);
        tokio::time::sleep(busy).await;
        assert!(poll_once(&mut polling));
        assert!(next_in(&polling) <= busy, "busy: the next look within the busy period");
    }

    struct Count(AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn jobs_queued_for_a_worker_wake_it_at_once_and_a_burst_of_them_once_per_busy_period() {
        let busy = Duration::from_millis(100);
        let wakeups = Wakeups::default();
        let mut polling = wakeups.polling("q", busy, Duration::from_secs(10));
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(woken.clone());
        let _ = polling.poll_drive(&mut Context::from_waker(&waker), &PollSnapshot::default());

        wakeups.queued("other");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(woken.0.load(Ordering::SeqCst), 0, "another queue's job does not concern it");
        wakeups.queued("q");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "woken at once");
        // The woken worker polls, and so waits for the next wake-up.
        let _ = polling.poll_drive(&mut Context::from_waker(&waker), &PollSnapshot::default());
        for _ in 0..50 {
            wakeups.queued("q");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the burst waits for the busy period");
        tokio::time::sleep(busy).await;
        assert_eq!(woken.0.load(Ordering::SeqCst), 2, "and wakes it once");

        // A worker that found jobs looks every busy period on its own: it is not woken.
        let _ = polling.poll_drive(&mut Context::from_waker(&waker), &PollSnapshot::default());
        polling.on_poll(&PollSnapshot { total_ready: 1, ..PollSnapshot::default() });
        tokio::time::sleep(busy).await;
        let ticked = woken.0.load(Ordering::SeqCst);
        assert_eq!(ticked, 3, "its own tick woke it");
        wakeups.queued("q");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(woken.0.load(Ordering::SeqCst), ticked);
    }
}
