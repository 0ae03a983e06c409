//! Durability under SIGKILL: the real binary on one data directory, killed again and again
//! while clients are writing, then restarted on the same directory. Properties checked after
//! every restart:
//! 1. Every explicit event that `Events.Record` acknowledged (an OK reply, the event not in
//!    `rejected`) is in effect: each BLOCK_BRAND's brand is in `blocked_brands`, each
//!    BLOCK_SHOP's shop in `blocked_shops`, each NOT_INTERESTED item in `not_interested`.
//! 2. Every consent change that `Profile.SetConsent` acknowledged is in effect: a withdrawn
//!    dimension (or personalisation switched off) stays withdrawn; a granted dimension that was
//!    never withdrawn afterwards stays granted.
//! 3. It accumulates: after round N the state still honours everything acknowledged in rounds
//!    1..N, across N kills and restarts.
//! 4. Recovery invents nothing: every blocked brand or shop and every not-interested item was
//!    sent for that user, and every consent setting is its default or a value a request asked
//!    for.
//! 5. The server comes back on the directory every time (it logs `listening on` only once its
//!    recovery has finished), also after a kill during its previous start-up (some rounds).
//! 6. 1-5 hold whatever the server ran with: built-in defaults (recovery replays the log),
//!    frequent snapshots (recovery merges a snapshot with the log; a kill can cut a snapshot
//!    short), or a 1 MiB memory cap (users are evicted and read back from disk).
//!
//! When something is missing, the same server is asked again 2 s later, to tell a loss on disk
//! (still missing) from a wrong read (present then); both fail the test.
//!
//! Each round's load, kill times and configurations come from a seeded generator: the seed is
//! printed, and `TACTFUL_CRASH_SEED` replays it (the interleaving with the kill stays up to
//! the scheduler). `TACTFUL_CRASH_ROUNDS` sets the number of rounds (default 3);
//! `scripts/crash-test.sh` runs many. To keep the checks exact, no id that is blocked is ever
//! unblocked and no dimension is granted again after it was withdrawn. Impressions and clicks
//! are counters that may be lost, and FEWER_LIKE_THIS and PURCHASE are not visible in a
//! profile: they are sent, counted when acknowledged, and not checked. A SIGKILL leaves the
//! page cache alone, so this cannot tell an fsync from a plain write: it checks that nothing
//! is acknowledged before it is written, and that recovery reads back all that was written.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tactful::pb;
use tactful::pb::DataDimension as D;
use tactful::time::now_ms;
use tonic::transport::Channel;

/// Users written to, split between the clients so each user's requests stay in order.
const USERS: usize = 300;
/// Concurrent writers, each on its own connection.
const CLIENTS: usize = 4;
const IMPRESSIONS_PER_BATCH: usize = 48;
const EXPLICIT_PER_BATCH: usize = 6;
/// The server is killed this many milliseconds (inclusive range) after the round's first
/// acknowledged Record.
const KILL_AFTER_MS: (u64, u64) = (50, 1200);
/// In some rounds the restart is killed too, this long (inclusive range) after its spawn.
const KILL_START_AFTER_MS: (u64, u64) = (0, 80);
/// Explicit feedback of one kind per user is capped by the server (1000 by default): stay
/// below it so that every rejection is unexpected.
const MAX_PER_KIND_PER_USER: usize = 900;
/// Bounds every call, so that nothing can hang.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENTS_STOP_TIMEOUT: Duration = Duration::from_secs(15);
const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);
/// Not-interested item ids start here, above the items impressions and purchases use.
const NOT_INTERESTED_BASE: u64 = 1_000_000_000;
const CATALOGUE_ITEMS: u64 = 5_000;

/// A consent setting: one data dimension, or the personalisation switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Setting {
    Dim(D),
    Personalization,
}

impl Setting {
    const ALL: [Setting; 9] = [
        Setting::Dim(D::Search),
        Setting::Dim(D::Browsing),
        Setting::Dim(D::Favorites),
        Setting::Dim(D::Cart),
        Setting::Dim(D::Purchases),
        Setting::Dim(D::Location),
        Setting::Dim(D::Social),
        Setting::Dim(D::CrossPlatform),
        Setting::Personalization,
    ];

    /// Privacy by default: on-platform data and personalisation on, the rest off.
    fn default_on(self) -> bool {
        !matches!(
            self,
            Setting::Dim(D::Location | D::Social | D::CrossPlatform)
        )
    }

    fn value_in(self, p: &pb::UserProfile) -> Option<bool> {
        match self {
            Setting::Personalization => Some(p.personalization),
            Setting::Dim(d) => p
                .consent
                .iter()
                .find(|c| c.dimension == d as i32)
                .map(|c| c.granted),
        }
    }
}

/// Each user walks these SetConsent steps in order, one step per request. A setting is
/// granted at most once and never granted again after it was withdrawn.
const CONSENT_STEPS: &[&[(Setting, bool)]] = &[
    &[
        (Setting::Dim(D::Location), true),
        (Setting::Dim(D::Social), true),
    ],
    &[(Setting::Dim(D::Social), false)],
    &[
        (Setting::Dim(D::Browsing), false),
        (Setting::Dim(D::CrossPlatform), true),
    ],
    &[(Setting::Dim(D::Location), false)],
    &[(Setting::Dim(D::Search), false)],
    &[
        (Setting::Dim(D::CrossPlatform), false),
        (Setting::Dim(D::Favorites), false),
    ],
    &[(Setting::Personalization, false)],
    &[
        (Setting::Dim(D::Cart), false),
        (Setting::Dim(D::Purchases), false),
    ],
];

/// A small seeded generator (splitmix64): enough to vary the load reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), close enough for a load generator.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

fn user_id(u: usize) -> String {
    format!("crash-{u:03}")
}

/// What was sent for one user, and what of it was acknowledged.
#[derive(Clone, Default)]
struct UserLedger {
    /// Acknowledged ids, each with the round that acknowledged it.
    acked_brands: BTreeMap<u64, u64>,
    acked_shops: BTreeMap<u64, u64>,
    acked_items: BTreeMap<u64, u64>,
    sent_brands: BTreeSet<u64>,
    sent_shops: BTreeSet<u64>,
    sent_items: BTreeSet<u64>,
    /// The next step of CONSENT_STEPS to send.
    consent_step: usize,
    sent_consent: BTreeMap<Setting, BTreeSet<bool>>,
    acked_consent: BTreeMap<Setting, BTreeSet<bool>>,
}

/// An explicit event of a batch, to be acknowledged or not by the reply.
#[derive(Clone, Copy, Debug)]
enum Explicit {
    Brand(u64),
    Shop(u64),
    Item(u64),
    /// FEWER_LIKE_THIS and PURCHASE: durable, but not visible in a profile.
    Unobservable,
}

#[derive(Default)]
struct Ledger {
    /// The round in progress, 1-based.
    round: u64,
    users: Vec<UserLedger>,
    next_brand: u64,
    next_shop: u64,
    next_item: u64,
    acked_explicit: u64,
    acked_unobservable: u64,
    acked_consent: u64,
    sent_explicit: u64,
    sent_consent: u64,
    /// Rejections of events this test considers valid, and failed calls before the kill.
    anomalies: Vec<String>,
    anomalies_total: u64,
}

impl Ledger {
    fn new() -> Self {
        Self {
            users: vec![UserLedger::default(); USERS],
            next_brand: 1,
            next_shop: 1,
            next_item: NOT_INTERESTED_BASE,
            ..Self::default()
        }
    }

    fn anomaly(&mut self, what: String) {
        self.anomalies_total += 1;
        if self.anomalies.len() < 20 {
            self.anomalies.push(what);
        }
    }

    /// A new explicit event for user `u`, recorded as sent; None when the user is at the cap.
    fn explicit_event(
        &mut self,
        u: usize,
        rng: &mut Rng,
        at_ms: i64,
    ) -> Option<(pb::Event, Explicit)> {
        let mut e = pb::Event {
            user_id: user_id(u),
            at_ms,
            ..Default::default()
        };
        let user = &mut self.users[u];
        let what = match rng.below(10) {
            0..=2 if user.sent_brands.len() < MAX_PER_KIND_PER_USER => {
                e.r#type = pb::EventType::BlockBrand.into();
                e.brand_id = self.next_brand;
                self.next_brand += 1;
                user.sent_brands.insert(e.brand_id);
                Explicit::Brand(e.brand_id)
            }
            3..=4 if user.sent_shops.len() < MAX_PER_KIND_PER_USER => {
                e.r#type = pb::EventType::BlockShop.into();
                e.shop_id = self.next_shop;
                self.next_shop += 1;
                user.sent_shops.insert(e.shop_id);
                Explicit::Shop(e.shop_id)
            }
            5..=7 if user.sent_items.len() < MAX_PER_KIND_PER_USER => {
                e.r#type = pb::EventType::NotInterested.into();
                e.item_id = self.next_item;
                self.next_item += 1;
                user.sent_items.insert(e.item_id);
                Explicit::Item(e.item_id)
            }
            8 => {
                e.r#type = pb::EventType::FewerLikeThis.into();
                e.category_id = 1 + rng.below(50);
                Explicit::Unobservable
            }
            9 => {
                e.r#type = pb::EventType::Purchase.into();
                e.item_id = 1 + rng.below(CATALOGUE_ITEMS);
                e.price = 9.5;
                Explicit::Unobservable
            }
            _ => return None,
        };
        self.sent_explicit += 1;
        Some((e, what))
    }

    fn acknowledge(&mut self, u: usize, what: Explicit) {
        let user = &mut self.users[u];
        let round = self.round;
        match what {
            Explicit::Brand(b) => {
                user.acked_brands.insert(b, round);
            }
            Explicit::Shop(s) => {
                user.acked_shops.insert(s, round);
            }
            Explicit::Item(i) => {
                user.acked_items.insert(i, round);
            }
            Explicit::Unobservable => self.acked_unobservable += 1,
        }
        self.acked_explicit += 1;
    }

    /// Takes the next consent step of one of `owned` users, recorded as sent.
    fn consent_step(
        &mut self,
        owned: &[usize],
        rng: &mut Rng,
    ) -> Option<(usize, pb::SetConsentRequest)> {
        let u = (0..8)
            .map(|_| owned[rng.index(owned.len())])
            .find(|&u| self.users[u].consent_step < CONSENT_STEPS.len())?;
        let user = &mut self.users[u];
        let step = CONSENT_STEPS[user.consent_step];
        user.consent_step += 1;
        let mut req = pb::SetConsentRequest {
            user_id: user_id(u),
            ..Default::default()
        };
        for &(setting, granted) in step {
            user.sent_consent
                .entry(setting)
                .or_default()
                .insert(granted);
            match setting {
                Setting::Dim(d) => req.dimensions.push(pb::DimensionConsent {
                    dimension: d.into(),
                    granted,
                }),
                Setting::Personalization => req.personalization = Some(granted),
            }
        }
        self.sent_consent += 1;
        Some((u, req))
    }

    fn acknowledge_consent(&mut self, u: usize, req: &pb::SetConsentRequest) {
        let user = &mut self.users[u];
        for c in &req.dimensions {
            let d = D::try_from(c.dimension).unwrap();
            user.acked_consent
                .entry(Setting::Dim(d))
                .or_default()
                .insert(c.granted);
        }
        if let Some(on) = req.personalization {
            user.acked_consent
                .entry(Setting::Personalization)
                .or_default()
                .insert(on);
        }
        self.acked_consent += 1;
    }
}

/// What a check after a restart found.
#[derive(Default)]
struct Findings {
    /// Acknowledged and not in effect.
    lost: Vec<String>,
    /// In effect but never asked for.
    invented: Vec<String>,
    /// Acknowledged changes that were checked.
    checked: u64,
    /// What the profiles of users with losses looked like.
    notes: Vec<String>,
}

impl Findings {
    fn merge(&mut self, other: Findings) {
        self.lost.extend(other.lost);
        self.invented.extend(other.invented);
        self.checked += other.checked;
        self.notes.extend(other.notes);
    }
}

/// Compares one user's profile after a restart with the ledger.
fn check_user(u: usize, l: &UserLedger, p: &pb::UserProfile) -> Findings {
    let mut f = Findings::default();
    let who = user_id(u);
    let ni: BTreeSet<u64> = p.not_interested.iter().map(|n| n.item_id).collect();
    let lists = [
        (
            "BLOCK_BRAND brand",
            &l.acked_brands,
            &l.sent_brands,
            p.blocked_brands.iter().copied().collect::<BTreeSet<u64>>(),
        ),
        (
            "BLOCK_SHOP shop",
            &l.acked_shops,
            &l.sent_shops,
            p.blocked_shops.iter().copied().collect::<BTreeSet<u64>>(),
        ),
        ("NOT_INTERESTED item", &l.acked_items, &l.sent_items, ni),
    ];
    for (what, acked, sent, actual) in lists {
        f.checked += acked.len() as u64;
        for (id, round) in acked {
            if !actual.contains(id) {
                f.lost.push(format!(
                    "{who}: {what} {id}, acknowledged in round {round}, is missing"
                ));
            }
        }
        for id in actual.difference(sent) {
            f.invented
                .push(format!("{who}: {what} {id} was never sent"));
        }
    }
    for setting in Setting::ALL {
        let Some(actual) = setting.value_in(p) else {
            f.lost
                .push(format!("{who}: the profile does not show {setting:?}"));
            continue;
        };
        let acked = l.acked_consent.get(&setting);
        let sent = l.sent_consent.get(&setting);
        let acked_off = acked.is_some_and(|s| s.contains(&false));
        let acked_on = acked.is_some_and(|s| s.contains(&true));
        let sent_off = sent.is_some_and(|s| s.contains(&false));
        if acked.is_some() {
            f.checked += 1;
        }
        if acked_off && actual {
            f.lost.push(format!(
                "{who}: acknowledged withdrawal of {setting:?} is not in effect (granted)"
            ));
        } else if acked_on && !sent_off && !actual {
            f.lost.push(format!(
                "{who}: acknowledged grant of {setting:?} is not in effect (denied)"
            ));
        } else if actual != setting.default_on() && !sent.is_some_and(|s| s.contains(&actual)) {
            f.invented.push(format!(
                "{who}: {setting:?} is {actual} but was never set to it"
            ));
        }
    }
    if !f.lost.is_empty() {
        f.notes.push(format!(
            "{who}: the profile (known: {}) shows {} brands, {} shops, {} items; {} brands, {} \
             shops and {} items were acknowledged",
            p.known,
            p.blocked_brands.len(),
            p.blocked_shops.len(),
            p.not_interested.len(),
            l.acked_brands.len(),
            l.acked_shops.len(),
            l.acked_items.len()
        ));
    }
    f
}

/// Removes terminal colour sequences from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// How the server is configured for one start: snapshots and memory pressure make recovery
/// merge a snapshot with the log instead of only replaying the log.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// The built-in defaults: in rounds this short, recovery replays the log.
    Defaults,
    /// A snapshot after every MiB of log and every second.
    FrequentSnapshots,
    /// The same, and a 1 MiB memory cap: users are evicted and read back from disk.
    TightMemory,
}

impl Setup {
    fn pick(rng: &mut Rng) -> Self {
        match rng.below(3) {
            0 => Setup::Defaults,
            1 => Setup::FrequentSnapshots,
            _ => Setup::TightMemory,
        }
    }

    fn toml(self) -> Option<&'static str> {
        match self {
            Setup::Defaults => None,
            Setup::FrequentSnapshots => {
                Some("[state]\nsnapshot_interval_s = 1\nsnapshot_log_mib = 1\n")
            }
            Setup::TightMemory => {
                Some("[state]\nsnapshot_interval_s = 1\nsnapshot_log_mib = 1\nmemory_cap_mib = 1\n")
            }
        }
    }
}

/// The real binary serving `--data-dir`, killed on drop if still running.
struct Server {
    child: Child,
    addr: String,
    /// The last lines of its log, shown when something goes wrong.
    log: Arc<Mutex<VecDeque<String>>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Spawns the server; the receiver gets its address once it listens.
    fn spawn(data_dir: &Path, setup: Setup) -> (Self, std::sync::mpsc::Receiver<String>) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tactful"));
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "off",
                "--data-dir",
            ])
            .arg(data_dir)
            .env("TACTFUL_LOG", "info")
            .env_remove("TACTFUL_CONFIG")
            .env_remove("TACTFUL_LISTEN")
            .env_remove("TACTFUL_DATA_DIR")
            .env_remove("TACTFUL_STATE")
            .env_remove("TACTFUL_MEMORY_CAP_MIB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(toml) = setup.toml() {
            let file = data_dir.with_extension("toml");
            std::fs::write(&file, toml).unwrap();
            command.arg("--config").arg(file);
        }
        let mut child = command.spawn().unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        // Reads the whole log, so that the server never blocks on a full pipe.
        let drain = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut lines = lines.lock().unwrap();
                if lines.len() == 40 {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        let server = Self {
            child,
            addr: String::new(),
            log,
            drain: Some(drain),
        };
        (server, rx)
    }

    /// Starts the server and waits until it listens (recovery has then finished).
    fn start(data_dir: &Path, setup: Setup) -> Self {
        let (mut server, rx) = Self::spawn(data_dir, setup);
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => server.addr = addr,
            Err(e) => {
                let status = server.kill();
                panic!(
                    "the server did not start on {} with {setup:?} ({e}; {status}):\n{}",
                    data_dir.display(),
                    server.log_tail()
                );
            }
        }
        server
    }

    /// Starts the server and kills it `after` its spawn, most likely while it recovers.
    /// Returns whether it was already listening.
    fn kill_during_start(data_dir: &Path, setup: Setup, after: Duration) -> bool {
        let (mut server, rx) = Self::spawn(data_dir, setup);
        std::thread::sleep(after);
        server.kill();
        rx.try_recv().is_ok()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL, then waits for the process and the end of its log.
    fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        match status {
            Ok(s) => format!("exit: {s}"),
            Err(e) => format!("wait failed: {e}"),
        }
    }

    fn log_tail(&self) -> String {
        let lines = self.log.lock().unwrap();
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.drain.is_some() {
            self.kill();
        }
    }
}

async fn connect(url: &str) -> Result<Channel, String> {
    let endpoint = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect_timeout(RPC_TIMEOUT)
        .timeout(RPC_TIMEOUT);
    match tokio::time::timeout(RPC_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("connect {url}: {e}")),
        Err(_) => Err(format!("connect {url}: timed out")),
    }
}

/// One writer: Record batches (impressions with explicit events shuffled in) and SetConsent
/// steps for the users it owns, until a call fails after `killed` was raised.
async fn client(
    task: usize,
    url: String,
    ledger: Arc<Mutex<Ledger>>,
    killed: Arc<AtomicBool>,
    mut rng: Rng,
) {
    let owned: Vec<usize> = (task..USERS).step_by(CLIENTS).collect();
    let channel = match connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            if !killed.load(Ordering::SeqCst) {
                ledger
                    .lock()
                    .unwrap()
                    .anomaly(format!("client {task}: {e}"));
            }
            return;
        }
    };
    let mut events = pb::events_client::EventsClient::new(channel.clone());
    let mut profile = pb::profile_client::ProfileClient::new(channel);
    // A failed call before the kill is an anomaly; stop trying after a few.
    let mut failures = 0;
    while failures < 20 {
        let at_ms = now_ms();
        let mut batch: Vec<(pb::Event, Option<(usize, Explicit)>)> = Vec::new();
        for i in 0..IMPRESSIONS_PER_BATCH {
            let u = owned[rng.index(owned.len())];
            let t = if i % 16 == 0 {
                pb::EventType::Click
            } else {
                pb::EventType::Impression
            };
            let e = pb::Event {
                user_id: user_id(u),
                at_ms,
                r#type: t.into(),
                item_id: 1 + rng.below(CATALOGUE_ITEMS),
                surface: "home_feed".into(),
                ..Default::default()
            };
            batch.push((e, None));
        }
        {
            let mut l = ledger.lock().unwrap();
            for _ in 0..EXPLICIT_PER_BATCH {
                let u = owned[rng.index(owned.len())];
                if let Some((e, what)) = l.explicit_event(u, &mut rng, at_ms) {
                    batch.push((e, Some((u, what))));
                }
            }
        }
        for i in (1..batch.len()).rev() {
            batch.swap(i, rng.index(i + 1));
        }
        let (sent, tags): (Vec<pb::Event>, Vec<_>) = batch.into_iter().unzip();
        let n = sent.len();
        let reply = tokio::time::timeout(
            RPC_TIMEOUT,
            events.record(pb::RecordRequest { events: sent }),
        )
        .await;
        match reply {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                let mut l = ledger.lock().unwrap();
                if r.rejected.len() != r.rejected_total as usize
                    || r.applied as usize + r.rejected_total as usize != n
                {
                    l.anomaly(format!(
                        "client {task}: {n} events sent, reply says applied {} rejected {} \
                         (listed {}); nothing counted as acknowledged",
                        r.applied,
                        r.rejected_total,
                        r.rejected.len()
                    ));
                    continue;
                }
                let rejected: BTreeSet<usize> =
                    r.rejected.iter().map(|x| x.index as usize).collect();
                for x in &r.rejected {
                    l.anomaly(format!(
                        "client {task}: event {} ({:?}) rejected: {}",
                        x.index,
                        tags.get(x.index as usize),
                        x.reason
                    ));
                }
                for (i, tag) in tags.iter().enumerate() {
                    if let Some((u, what)) = tag
                        && !rejected.contains(&i)
                    {
                        l.acknowledge(*u, *what);
                    }
                }
            }
            Ok(Err(status)) => {
                if killed.load(Ordering::SeqCst) {
                    return;
                }
                failures += 1;
                ledger.lock().unwrap().anomaly(format!(
                    "client {task}: Record failed before the kill: {status}"
                ));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => {
                if !killed.load(Ordering::SeqCst) {
                    ledger
                        .lock()
                        .unwrap()
                        .anomaly(format!("client {task}: Record timed out before the kill"));
                }
                return;
            }
        }
        if rng.below(6) == 0 {
            let step = ledger.lock().unwrap().consent_step(&owned, &mut rng);
            if let Some((u, req)) = step {
                match tokio::time::timeout(RPC_TIMEOUT, profile.set_consent(req.clone())).await {
                    Ok(Ok(_)) => ledger.lock().unwrap().acknowledge_consent(u, &req),
                    Ok(Err(status)) => {
                        if killed.load(Ordering::SeqCst) {
                            return;
                        }
                        failures += 1;
                        ledger.lock().unwrap().anomaly(format!(
                            "client {task}: SetConsent failed before the kill: {status}"
                        ));
                    }
                    Err(_) => {
                        if !killed.load(Ordering::SeqCst) {
                            ledger.lock().unwrap().anomaly(format!(
                                "client {task}: SetConsent timed out before the kill"
                            ));
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// Reads every user's profile and compares it with the ledger.
async fn verify(url: &str, users: Arc<Vec<UserLedger>>) -> Findings {
    let channel = connect(url).await.unwrap();
    let mut tasks = Vec::new();
    for part in 0..8 {
        let users = users.clone();
        let mut profile = pb::profile_client::ProfileClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut f = Findings::default();
            for u in (part..users.len()).step_by(8) {
                let req = pb::GetProfileRequest {
                    user_id: user_id(u),
                };
                let p = tokio::time::timeout(RPC_TIMEOUT, profile.get(req))
                    .await
                    .unwrap_or_else(|_| panic!("Profile.Get for {} timed out", user_id(u)))
                    .unwrap_or_else(|e| panic!("Profile.Get for {}: {e}", user_id(u)))
                    .into_inner();
                f.merge(check_user(u, &users[u], &p));
            }
            f
        }));
    }
    let mut findings = Findings::default();
    for t in tasks {
        findings.merge(t.await.unwrap());
    }
    findings
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// A fresh directory under cargo's scratch space for integration tests.
fn fresh_data_dir(seed: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("crash-{}-{seed:x}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(tactful::state::default_key_dir(&dir));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names of the files in the data directory.
fn data_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn print_list(title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    eprintln!("{title} ({}):", items.len());
    for x in items.iter().take(50) {
        eprintln!("  {x}");
    }
    if items.len() > 50 {
        eprintln!("  ... and {} more", items.len() - 50);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_feedback_and_consent_survive_sigkill() {
    let rounds = env_u64("TACTFUL_CRASH_ROUNDS").unwrap_or(3);
    let seed = env_u64("TACTFUL_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let dir = fresh_data_dir(seed);
    eprintln!(
        "crash test: {rounds} rounds, seed {seed} (replay with TACTFUL_CRASH_SEED={seed}), data dir {}",
        dir.display()
    );
    let mut rng = Rng(seed);
    let ledger = Arc::new(Mutex::new(Ledger::new()));
    let mut setup = Setup::pick(&mut rng);
    let mut server = Server::start(&dir, setup);
    let mut snapshots_seen = BTreeSet::new();
    let mut lost = 0usize;
    let mut lost_for_good = 0usize;
    let mut invented = 0usize;
    let mut failed_rounds = Vec::new();
    let started = Instant::now();

    for round in 1..=rounds {
        let round_start = Instant::now();
        ledger.lock().unwrap().round = round;
        let before = {
            let l = ledger.lock().unwrap();
            (l.acked_explicit, l.acked_consent)
        };
        let killed = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|task| {
                tokio::spawn(client(
                    task,
                    server.url(),
                    ledger.clone(),
                    killed.clone(),
                    Rng(rng.next()),
                ))
            })
            .collect();
        let kill_after = rng.between(KILL_AFTER_MS);
        // The kill timer starts at the first acknowledgement, so every round tests something
        // however slow the machine.
        let first = Instant::now();
        while ledger.lock().unwrap().acked_explicit == before.0 {
            assert!(
                first.elapsed() < START_TIMEOUT,
                "round {round}: no Record acknowledged in {START_TIMEOUT:?}; anomalies: {:?}",
                ledger.lock().unwrap().anomalies
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        killed.store(true, Ordering::SeqCst);
        server.kill();
        for c in clients {
            match tokio::time::timeout(CLIENTS_STOP_TIMEOUT, c).await {
                Ok(r) => r.unwrap(),
                Err(_) => panic!("round {round}: a client did not stop after the kill"),
            }
        }

        let files = data_files(&dir);
        snapshots_seen.extend(files.iter().filter(|f| f.contains("snapshot")).cloned());

        let served_with = setup;
        setup = Setup::pick(&mut rng);
        let start_kill = if rng.below(3) == 0 {
            let after = rng.between(KILL_START_AFTER_MS);
            let listened = Server::kill_during_start(&dir, setup, Duration::from_millis(after));
            if listened {
                format!("; its restart killed after {after} ms (had listened)")
            } else {
                format!("; its restart killed after {after} ms (during start-up)")
            }
        } else {
            String::new()
        };
        let restart = Instant::now();
        server = Server::start(&dir, setup);
        let recovery_ms = restart.elapsed().as_millis();
        let users = Arc::new(ledger.lock().unwrap().users.clone());
        let findings = tokio::time::timeout(VERIFY_TIMEOUT, verify(&server.url(), users.clone()))
            .await
            .unwrap_or_else(|_| panic!("round {round}: verification timed out"));
        let (acked_explicit, acked_consent) = {
            let l = ledger.lock().unwrap();
            (l.acked_explicit, l.acked_consent)
        };
        eprintln!(
            "round {round}/{rounds}: {served_with:?} server killed after {kill_after} ms{start_kill}; \
             acknowledged {} explicit events and {} consent changes; data dir {} files; \
             restart ({setup:?}) {recovery_ms} ms; checked {} acknowledged changes in all: \
             lost {}, invented {}; round {} ms",
            acked_explicit - before.0,
            acked_consent - before.1,
            files.len(),
            findings.checked,
            findings.lost.len(),
            findings.invented.len(),
            round_start.elapsed().as_millis(),
        );
        if !findings.lost.is_empty() || !findings.invented.is_empty() {
            failed_rounds.push(round);
            print_list(&format!("round {round}: LOST"), &findings.lost);
            print_list(&format!("round {round}: INVENTED"), &findings.invented);
            print_list(&format!("round {round}: profiles"), &findings.notes);
            // Tells a stale read from a loss on disk: the same server, asked again later.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let again = tokio::time::timeout(VERIFY_TIMEOUT, verify(&server.url(), users))
                .await
                .unwrap_or_else(|_| panic!("round {round}: verification timed out"));
            let still: BTreeSet<&String> = again.lost.iter().collect();
            let persistent = findings.lost.iter().filter(|x| still.contains(x)).count();
            lost_for_good += persistent;
            eprintln!(
                "round {round}: asked the same server again 2 s later: {persistent} of the {} \
                 still missing (the rest was a wrong read, not a loss on disk); this time \
                 {} missing, {} invented",
                findings.lost.len(),
                again.lost.len(),
                again.invented.len()
            );
            eprintln!("server log after the restart:\n{}", server.log_tail());
        }
        lost += findings.lost.len();
        invented += findings.invented.len();
    }
    server.kill();

    let l = ledger.lock().unwrap();
    print_list("anomalies (not failures)", &l.anomalies);
    eprintln!(
        "crash summary: rounds={rounds} acknowledged_explicit={} (of {} sent; {} not visible \
         in a profile) acknowledged_consent={} (of {} sent) lost={lost} invented={invented} \
         still_missing_on_reread={lost_for_good} anomalies={} snapshot_files_seen={} seed={seed} \
         elapsed={:.1}s",
        l.acked_explicit,
        l.sent_explicit,
        l.acked_unobservable,
        l.acked_consent,
        l.sent_consent,
        l.anomalies_total,
        snapshots_seen.len(),
        started.elapsed().as_secs_f64(),
    );
    assert!(
        lost == 0 && invented == 0,
        "seed {seed}: after SIGKILL and restart, {lost} acknowledged changes were missing \
         ({lost_for_good} of them still missing 2 s later) and {invented} were invented, in \
         rounds {failed_rounds:?}; data dir kept at {}",
        dir.display()
    );
    assert!(
        l.acked_explicit > 0,
        "seed {seed}: nothing was acknowledged, so nothing was tested"
    );
    drop(l);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(tactful::state::default_key_dir(&dir));
    let _ = std::fs::remove_file(dir.with_extension("toml"));
}
