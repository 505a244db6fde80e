//! PUB/SUB broadcasts over tcp loopback: topic filtering, sequence numbers, signing.

mod common;

use std::time::Duration;

use hooteproto::Key;
use hooteproto::broadcast::{Publisher, Subscriber};
use hooteproto::v1::broadcast::Event;
use hooteproto::v1::{Broadcast, JobProgress, JobState, JobStateChanged, ScriptInvalidate};

fn progress(fraction: f64) -> Event {
    Event::JobProgress(JobProgress {
        job_id: "job-1".into(),
        fraction,
        message: "rendering".into(),
    })
}

/// PUB/SUB drops everything sent before the subscription reaches the publisher ("slow
/// joiner"), so publish until the subscriber hears something.
async fn first_heard(publisher: &Publisher, subscriber: &mut Subscriber, event: impl Fn() -> Event) -> Broadcast {
    for _ in 0..100 {
        publisher.publish(event()).expect("publish");
        if let Ok(Ok(heard)) = tokio::time::timeout(Duration::from_millis(50), subscriber.recv()).await {
            return heard;
        }
    }
    panic!("subscriber never heard the publisher");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_only_their_topics_in_order() {
    let publisher = Publisher::bind("tcp://127.0.0.1:*", "luanette", None, false).expect("bind");
    let mut jobs = Subscriber::connect(publisher.local_endpoint(), &["job_"], None).expect("connect");
    let first = first_heard(&publisher, &mut jobs, || progress(0.0)).await;
    assert_eq!(first.source, "luanette");

    publisher
        .publish(Event::ScriptInvalidate(ScriptInvalidate {
            script_hash: "ab".into(),
            reason: "tags".into(),
            ..Default::default()
        }))
        .expect("publish");
    let changed = publisher
        .publish(Event::JobStateChanged(JobStateChanged {
            job_id: "job-1".into(),
            state: JobState::Succeeded as i32,
        }))
        .expect("publish");
    let last = publisher.publish(progress(1.0)).expect("publish");

    let heard = jobs.recv().await.expect("recv");
    assert_eq!(
        heard.sequence, changed,
        "script_invalidate is filtered out; nothing else is lost"
    );
    assert!(matches!(heard.event, Some(Event::JobStateChanged(_))));
    let heard = jobs.recv().await.expect("recv");
    assert_eq!(heard.sequence, last);
    assert!(matches!(heard.event, Some(Event::JobProgress(JobProgress { fraction, .. })) if fraction == 1.0));
    assert!(heard.sent_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_broadcasts_reject_strangers() {
    let key = Key::new(b"broadcast-shared-key".to_vec()).expect("key");
    let signed = Publisher::bind("tcp://127.0.0.1:*", "luanette", Some(key.clone()), false).expect("bind");
    let mut listener = Subscriber::connect(signed.local_endpoint(), &[""], Some(key)).expect("connect");
    first_heard(&signed, &mut listener, || progress(0.5)).await;

    // A subscriber with another key hears the same traffic and accepts none of it.
    let mut stranger = Subscriber::connect(
        signed.local_endpoint(),
        &[""],
        Some(Key::new(b"some-other-key-here".to_vec()).expect("key")),
    )
    .expect("connect");
    for _ in 0..20 {
        signed.publish(progress(0.9)).expect("publish");
        let heard = tokio::time::timeout(Duration::from_millis(25), stranger.recv()).await;
        assert!(heard.is_err(), "a wrongly keyed subscriber must not accept: {heard:?}");
    }
    assert!(stranger.rejected() > 0, "it did hear, and rejected, the broadcasts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_lies_about_its_body_is_rejected() {
    let context = zmq::Context::new();
    let raw = context.socket(zmq::PUB).expect("pub");
    raw.bind("tcp://127.0.0.1:*").expect("bind");
    let endpoint = raw.get_last_endpoint().expect("endpoint").expect("utf8");
    let mut subscriber = Subscriber::connect(&endpoint, &["job_progress"], None).expect("connect");
    use prost::Message as _;
    let body = Broadcast {
        event: Some(Event::ScriptInvalidate(ScriptInvalidate::default())),
        ..Default::default()
    }
    .encode_to_vec();
    for _ in 0..40 {
        raw.send_multipart([b"job_progress".to_vec(), b"HOOT/1".to_vec(), vec![], body.clone()], 0)
            .expect("send");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let heard = tokio::time::timeout(Duration::from_millis(100), subscriber.recv()).await;
    assert!(heard.is_err(), "spoofed topic accepted: {heard:?}");
    assert!(subscriber.rejected() > 0);
}
