//! Cluster mode: this broker among the others sharing one metadata store
//! and one object store.
//!
//! - **Membership.** At start the broker registers its node id in the
//!   store's broker registry and gets a session (node id + incarnation)
//!   with a lease it renews every `broker_heartbeat_interval_ms`. A node id
//!   held by a live session is refused; one held by a previous process
//!   whose lease has not lapsed yet is waited for (see `join`).
//! - **The view.** Every `cluster_watch_interval_ms` the broker reads the
//!   cluster version and the registry; when the version moved (another
//!   broker created a topic, claimed or released partitions…) it reloads
//!   topics and partition states. Metadata, DescribeCluster and
//!   FindCoordinator answer from this view.
//! - **Placement.** Partitions and groups are placed on live brokers by
//!   rendezvous hashing (`placement`). Each broker claims the partitions
//!   placed on it (once their leader released them or its lease lapsed) and
//!   hands over those placed elsewhere (`rebalance`).
//! - **Leaving.** On shutdown the broker hands every partition over and
//!   closes its session, so the next leaders take over at once.
//! - **Probation.** When the store was out of this broker's reach long
//!   enough for leases to lapse (its lease renewals failed: a network
//!   partition, or another broker holding the shared SQLite file's write
//!   lock), the other brokers' renewals most likely failed too, and their
//!   leases lapsed through no fault of theirs. For one session timeout after the store answers again
//!   this broker counts every open session as live, so it claims nothing
//!   from them and fences no one: the first broker back must not take the
//!   whole cluster. Brokers still silent after that are taken for dead.
//!
//! Fencing is not decided here: the store refuses every commit of a session
//! that was fenced or of a partition claimed away (docs/design/0007).

pub mod placement;
#[cfg(test)]
mod tests;
mod view;
mod watch;

pub use watch::run;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use metadata::{BrokerRegistration, BrokerSession, MetadataStore, TopicPartition};
use storage::{Clock, Log};

pub use view::ClusterView;

/// How long `join` retries while the metadata store is unavailable.
const JOIN_UNAVAILABLE_LIMIT: Duration = Duration::from_secs(60);

/// The longest gap between two lease renewals after which no other
/// broker's lease can have lapsed for the same reason: a broker that renews
/// every heartbeat lapses once the store is out of its reach for the
/// session timeout less a heartbeat, and this broker's own gap exceeds the
/// outage by up to a heartbeat (and a watch interval). Never under two
/// heartbeats, so that one slow renewal is no probation.
fn probation_gap_ms(settings: &ClusterSettings) -> i64 {
    let heartbeat = settings.heartbeat_interval_ms as i64;
    let watch = settings.watch_interval_ms as i64;
    let lapse_possible = settings.session_timeout_ms as i64 - 2 * heartbeat - watch;
    lapse_possible.max(2 * heartbeat + watch)
}

/// The cluster settings (see `config::Settings` for each).
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub session_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub watch_interval_ms: u64,
    pub handover_drain_ms: u64,
}

pub struct Cluster {
    metadata: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    registration: BrokerRegistration,
    settings: ClusterSettings,
    session: Arc<Mutex<BrokerSession>>,
    view: RwLock<Arc<ClusterView>>,
    /// One rebalance at a time (the loop and admin handlers both start them).
    rebalancing: tokio::sync::Mutex<()>,
    /// Set by `leave`: no more claims.
    leaving: std::sync::atomic::AtomicBool,
    contact: Mutex<StoreContact>,
}

/// When this broker last renewed its lease, and until when it is on
/// probation (clock milliseconds).
#[derive(Debug, Default)]
struct StoreContact {
    last_renewed_ms: Option<i64>,
    probation_until_ms: i64,
}

impl Cluster {
    /// Registers this broker. When a session of the same node id is still
    /// open with a lease that has not lapsed, this waits for the lease
    /// once: a previous process killed without closing its session lapses
    /// then; a live broker renews its lease meanwhile, and this broker
    /// refuses to start (`BrokerIdInUse`), as Kafka refuses a duplicate
    /// broker registration. The wait is bounded by the lease plus a second
    /// of the runtime's own time, whatever the injected clock says.
    pub async fn join(
        metadata: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
        registration: BrokerRegistration,
        settings: ClusterSettings,
    ) -> metadata::Result<Cluster> {
        let lease_ms = settings.session_timeout_ms as i64;
        // The lease being waited for, and until when at most.
        let mut waiting: Option<(i64, tokio::time::Instant)> = None;
        let join_started = tokio::time::Instant::now();
        let mut store_was_unavailable = false;
        let session = loop {
            let now_ms = clock.now_ms();
            match metadata
                .register_broker(&registration, now_ms, lease_ms)
                .await
            {
                Ok(session) => break session,
                Err(metadata::Error::BrokerIdInUse {
                    lease_expires_ms, ..
                }) if waiting.is_none_or(|(seen, until)| {
                    seen == lease_expires_ms && tokio::time::Instant::now() < until
                }) && lease_expires_ms - now_ms <= lease_ms =>
                {
                    if waiting.is_none() {
                        tracing::info!(
                            node_id = registration.node_id,
                            wait_ms = lease_expires_ms - now_ms,
                            "the node id's previous session is still open; waiting for its lease to lapse"
                        );
                        let bound = Duration::from_millis(lease_ms as u64 + 1_000);
                        waiting = Some((lease_expires_ms, tokio::time::Instant::now() + bound));
                    }
                    let wait = (lease_expires_ms - now_ms).clamp(1, lease_ms) as u64 + 10;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                // The store is busy (another broker sharing the SQLite file
                // holds its write lock) or unreachable: wait, bounded.
                Err(e @ metadata::Error::Unavailable(_))
                    if join_started.elapsed() < JOIN_UNAVAILABLE_LIMIT =>
                {
                    tracing::warn!(error = %e, "the metadata store is unavailable; retrying the registration");
                    store_was_unavailable = true;
                    tokio::time::sleep(Duration::from_millis(settings.heartbeat_interval_ms)).await;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::info!(%session, "registered in the broker registry");
        let cluster = Cluster {
            metadata,
            clock,
            registration,
            settings,
            session: Arc::new(Mutex::new(session)),
            view: RwLock::new(Arc::new(ClusterView::default())),
            rebalancing: tokio::sync::Mutex::new(()),
            leaving: Default::default(),
            contact: Mutex::new(StoreContact::default()),
        };
        cluster.renewed();
        if store_was_unavailable {
            // As after a gap in its renewals.
            cluster
                .start_probation("the metadata store was unavailable while this broker registered");
        }
        cluster.reload_view(true).await?;
        Ok(cluster)
    }

    pub fn session(&self) -> BrokerSession {
        *self.session.lock().expect("session lock")
    }

    /// This broker's session as it will be: a new one after it registers
    /// again.
    pub fn session_source(&self) -> crate::groups::SessionSource {
        let session = self.session.clone();
        Arc::new(move || *session.lock().expect("session lock"))
    }

    pub fn node_id(&self) -> i32 {
        self.registration.node_id
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Which groups this broker coordinates under the current view.
    pub fn group_placement(&self) -> crate::groups::Placement {
        let view = self.view();
        let me = self.node_id();
        Arc::new(move |group_id: &str| {
            view.coordinator_of(group_id)
                .is_some_and(|c| c.session.node_id == me)
        })
    }

    /// The latest view of the cluster.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.read().expect("view lock").clone()
    }

    /// Reads the registry and the cluster version; reloads the partition
    /// states when the version moved (or `force`). Returns whether it did,
    /// so the caller reloads topics too.
    pub async fn reload_view(&self, force: bool) -> metadata::Result<bool> {
        let version = self.metadata.cluster_version().await?;
        let brokers = self.metadata.brokers().await?;
        let now_ms = self.clock.now_ms();
        let old = self.view();
        let moved = force || version != old.version;
        let partitions = if moved {
            let topic_ids: Vec<_> = self
                .metadata
                .topics()
                .await?
                .iter()
                .map(|t| t.topic_id)
                .collect();
            self.metadata
                .partition_states(&topic_ids)
                .await?
                .into_iter()
                .map(|s| (s.topic_partition, s))
                .collect()
        } else {
            old.partitions.clone()
        };
        let on_probation = self.on_probation();
        let view = ClusterView::new(
            version,
            &brokers,
            now_ms,
            partitions,
            self.session(),
            on_probation,
        );
        *self.view.write().expect("view lock") = Arc::new(view);
        Ok(moved)
    }

    /// Renews the lease. A session fenced meanwhile (this broker was taken
    /// for dead) leads nothing: the log drops every partition and the
    /// broker registers again under a new incarnation, then claims its
    /// share like a new broker.
    pub async fn heartbeat(&self, log: &Log) -> metadata::Result<()> {
        let session = self.session();
        let now_ms = self.clock.now_ms();
        let lease_ms = self.settings.session_timeout_ms as i64;
        match self.metadata.renew_lease(session, now_ms, lease_ms).await {
            Ok(()) => {
                self.renewed();
                Ok(())
            }
            Err(metadata::Error::SessionFenced(_)) => {
                tracing::warn!(%session, "this broker's session was fenced (its lease lapsed); registering again");
                let new = self
                    .metadata
                    .register_broker(&self.registration, now_ms, lease_ms)
                    .await?;
                *self.session.lock().expect("session lock") = new;
                self.renewed();
                log.lead(new, Vec::new());
                tracing::info!(session = %new, "registered again");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Notes a lease renewal (or registration) that the store took. After
    /// a gap longer than `probation_gap_ms` since the previous one, this
    /// broker goes on probation for a session timeout (see the module
    /// documentation).
    fn renewed(&self) {
        let now_ms = self.clock.now_ms();
        let mut contact = self.contact.lock().expect("contact lock");
        let gap_ms = contact.last_renewed_ms.map_or(0, |last| now_ms - last);
        let allowed_ms = probation_gap_ms(&self.settings);
        contact.last_renewed_ms = Some(now_ms);
        drop(contact);
        if gap_ms > allowed_ms {
            self.start_probation(&format!("no lease renewal for {gap_ms} ms"));
        }
    }

    fn start_probation(&self, why: &str) {
        let probation_ms = self.settings.session_timeout_ms as i64;
        self.contact
            .lock()
            .expect("contact lock")
            .probation_until_ms = self.clock.now_ms() + probation_ms;
        tracing::warn!(
            why,
            probation_ms,
            "on probation: for one session timeout this broker takes no partition or group from brokers whose lease lapsed meanwhile"
        );
    }

    /// Whether this broker is on probation (see the module documentation).
    pub fn on_probation(&self) -> bool {
        self.clock.now_ms()
            < self
                .contact
                .lock()
                .expect("contact lock")
                .probation_until_ms
    }

    /// Brings leadership in line with the view: hands over the partitions
    /// placed on another live broker, forgets those of deleted topics, and
    /// claims those placed here that are free (released, or led by a
    /// session that ended or whose lease lapsed). Returns whether anything
    /// changed.
    pub async fn rebalance(&self, log: &Log) -> bool {
        let _one = self.rebalancing.lock().await;
        if self.leaving.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let view = self.view();
        let session = self.session();
        let me = session.node_id;
        if !view.is_live(me) {
            // Our session was fenced; the heartbeat registers us again.
            return false;
        }
        let led: std::collections::HashMap<TopicPartition, i32> = log.led().into_iter().collect();
        let mut hand_over = Vec::new();
        let mut forget = Vec::new();
        for tp in led.keys() {
            match view.placement_of(tp) {
                None => forget.push(*tp),
                Some(owner) if owner != me => hand_over.push(*tp),
                Some(_) => {}
            }
        }
        let mut claim = Vec::new();
        for (tp, state) in &view.partitions {
            if led.contains_key(tp) || view.placement_of(tp) != Some(me) {
                continue;
            }
            let free = match state.leader {
                None => true,
                Some(leader) => leader == session || !view.is_current_and_live(leader),
            };
            if free {
                claim.push(*tp);
            }
        }
        if hand_over.is_empty() && forget.is_empty() && claim.is_empty() {
            return false;
        }
        if !forget.is_empty() {
            log.resign(&forget, Duration::ZERO).await;
        }
        if !hand_over.is_empty() {
            self.hand_over(log, &hand_over).await;
        }
        if !claim.is_empty() {
            claim.sort();
            self.claim(log, &claim).await;
        }
        if let Err(e) = self.reload_view(true).await {
            tracing::warn!(error = %e, "could not reload the cluster view after a rebalance");
        }
        true
    }

    async fn hand_over(&self, log: &Log, partitions: &[TopicPartition]) {
        let drain = Duration::from_millis(self.settings.handover_drain_ms);
        let released = log.resign(partitions, drain).await;
        match self
            .metadata
            .release_partitions(self.session(), &released)
            .await
        {
            Ok(()) => tracing::info!(partitions = released.len(), "handed partitions over"),
            // Still ours in the store: another broker claims them once our
            // lease lapses, or we claim them back.
            Err(e) => tracing::warn!(error = %e, "could not release handed-over partitions"),
        }
    }

    async fn claim(&self, log: &Log, partitions: &[TopicPartition]) {
        let session = self.session();
        let now_ms = self.clock.now_ms();
        let answers = match self
            .metadata
            .claim_partitions(session, partitions, now_ms)
            .await
        {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim partitions");
                return;
            }
        };
        let mut claims = Vec::new();
        for (tp, answer) in partitions.iter().zip(answers) {
            match answer {
                Ok(claim) => claims.push(claim),
                // Its leader has not released it yet; next turn.
                Err(e) => tracing::debug!(topic_partition = %tp, error = %e, "not claimed"),
            }
        }
        if !claims.is_empty() {
            tracing::info!(partitions = claims.len(), %session, "leading claimed partitions");
            log.lead(session, claims);
        }
    }

    /// Graceful leave: hands every partition over and closes the session,
    /// so others claim at once instead of after a lease. Call after the
    /// log stopped taking appends and flushed.
    pub async fn leave(&self, log: &Log) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::Release);
        // Waits for a rebalance in progress; none starts after.
        let _one = self.rebalancing.lock().await;
        let session = self.session();
        let led: Vec<TopicPartition> = log.led().into_iter().map(|(tp, _)| tp).collect();
        let drain = Duration::from_millis(self.settings.handover_drain_ms);
        let released = log.resign(&led, drain).await;
        if let Err(e) = self.metadata.release_partitions(session, &released).await {
            tracing::warn!(error = %e, "could not release partitions on shutdown");
        }
        match self.metadata.close_session(session).await {
            Ok(()) => tracing::info!(%session, partitions = released.len(), "left the cluster"),
            Err(e) => {
                tracing::warn!(error = %e, "could not close the session; others wait for its lease")
            }
        }
    }
}
