//! A real tactful server on 127.0.0.1:0 for integration tests, with generated clients and
//! stages that make time-dependent behaviour deterministic.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tactful::config::Config;
use tactful::engine::Engine;
use tactful::grpc::ServeError;
use tactful::pb;
use tactful::rank::stages::{
    explain::Explain, feedback::ExplicitFeedback, order::ByScore, relevance::Relevance,
};
use tactful::rank::user::LifecycleThresholds;
use tactful::rank::{Deadline, Interrupted, Parallelism, Pipeline, Policies, Slate, Stage};
use tactful::state::UserStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub struct TestServer {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), ServeError>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        Self::with_pipelines(config, Vec::new()).await
    }

    /// Starts a server that also knows `extra` pipelines (e.g. with a test stage in them).
    pub async fn with_pipelines(config: Config, extra: Vec<(&str, Pipeline)>) -> Self {
        let mut policies = Policies::build(&config.policies, config.parallelism()).unwrap();
        for (name, pipeline) in extra {
            policies.insert(name, pipeline).unwrap();
        }
        let store = Arc::new(UserStore::in_memory(config.state_config()));
        let engine = Arc::new(Engine::with_parts(&config, policies, store).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server_engine = engine.clone();
        let handle = tokio::spawn(async move {
            tactful::grpc::serve(listener, &config, server_engine, async {
                let _ = rx.await;
            })
            .await
        });
        Self {
            addr,
            engine,
            shutdown: Some(tx),
            handle,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn ranker(&self) -> pb::ranker_client::RankerClient<Channel> {
        pb::ranker_client::RankerClient::new(self.channel().await)
    }

    /// One successful Rank call.
    pub async fn rank(&self, req: impl tonic::IntoRequest<pb::RankRequest>) -> pb::RankResponse {
        self.ranker().await.rank(req).await.unwrap().into_inner()
    }

    pub async fn events(&self) -> pb::events_client::EventsClient<Channel> {
        pb::events_client::EventsClient::new(self.channel().await)
    }

    pub async fn profile(&self) -> pb::profile_client::ProfileClient<Channel> {
        pb::profile_client::ProfileClient::new(self.channel().await)
    }

    /// Starts the drain; the returned handle completes when the server has stopped.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(mut self) {
        self.begin_shutdown();
        self.handle.await.unwrap().unwrap();
    }

    pub async fn stopped(self) -> Result<(), ServeError> {
        self.handle.await.unwrap()
    }
}

pub fn candidate(item_id: u64, score: f32, category_id: u64, brand_id: u64) -> pb::Candidate {
    pb::Candidate {
        item_id,
        score,
        category_id,
        brand_id,
        shop_id: brand_id * 10,
        title: format!("item {item_id}"),
        ..Default::default()
    }
}

/// Ten candidates over five categories and five brands, best score first.
pub fn catalogue() -> Vec<pb::Candidate> {
    (1..=10)
        .map(|i| candidate(i, 1.0 - i as f32 * 0.05, i % 5 + 1, i % 5 + 100))
        .collect()
}

pub fn request(user: &str, candidates: Vec<pb::Candidate>) -> pb::RankRequest {
    pb::RankRequest {
        user_id: user.into(),
        candidates,
        ..Default::default()
    }
}

pub fn ids(r: &pb::RankResponse) -> Vec<u64> {
    r.items.iter().map(|i| i.item_id).collect()
}

pub fn event(user: &str, t: pb::EventType) -> pb::Event {
    pb::Event {
        user_id: user.into(),
        r#type: t.into(),
        ..Default::default()
    }
}

/// A pipeline: explicit feedback, then `stage`, then relevance by score with reasons.
pub fn pipeline_with(name: &str, stage: impl Stage + 'static) -> Pipeline {
    Pipeline::new(
        format!("{name}@1"),
        vec![
            Box::new(ExplicitFeedback),
            Box::new(stage),
            Box::new(Relevance),
            Box::new(ByScore),
            Box::new(Explain),
        ],
        true,
        LifecycleThresholds::default(),
        Parallelism::SEQUENTIAL,
    )
}

/// Holds its thread until the ranking's deadline has passed: whatever the machine's speed,
/// the ranking cannot finish in time.
pub struct StallPastDeadline;

impl Stage for StallPastDeadline {
    fn name(&self) -> &'static str {
        "stall_past_deadline"
    }
    fn apply(&self, _: &mut Slate<'_>, deadline: &Deadline) -> Result<(), Interrupted> {
        while !deadline.expired() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// Takes a fixed time, well inside any deadline the tests use.
pub struct Slow(pub Duration);

impl Stage for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn apply(&self, _: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        std::thread::sleep(self.0);
        Ok(())
    }
}

/// Panics, as a buggy stage would.
pub struct Boom;

impl Stage for Boom {
    fn name(&self) -> &'static str {
        "boom"
    }
    fn apply(&self, _: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        panic!("a stage bug")
    }
}

/// Blocks every ranking inside it until opened (or until its deadline), and reports when a
/// ranking has entered, so a test can hold the in-flight limit deterministically.
#[derive(Clone, Default)]
pub struct Gate {
    state: Arc<(Mutex<(bool, usize)>, Condvar)>,
}

impl Gate {
    pub fn open(&self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().0 = true;
        cv.notify_all();
    }

    /// Waits (off the async runtime) until `n` rankings have entered the gate.
    pub async fn entered(&self, n: usize) {
        let gate = self.clone();
        tokio::task::spawn_blocking(move || {
            let (lock, cv) = &*gate.state;
            let mut s = lock.lock().unwrap();
            while s.1 < n {
                s = cv.wait(s).unwrap();
            }
        })
        .await
        .unwrap();
    }
}

impl Stage for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn apply(&self, _: &mut Slate<'_>, deadline: &Deadline) -> Result<(), Interrupted> {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.1 += 1;
        cv.notify_all();
        while !s.0 {
            if deadline.expired() {
                break;
            }
            s = cv.wait_timeout(s, Duration::from_millis(5)).unwrap().0;
        }
        Ok(())
    }
}
