//! A connection dropped without a close frame resumes the same session at the
//! last sequence, at READY's `resume_gateway_url`, and replays what was missed.

use relay_protocol::payload::EventBody;
use relay_tests::discord::*;

#[test]
fn a_dropped_connection_resumes_with_session_and_sequence() {
    let d = Driven::start(sim_config());
    d.sim.post_as(ids::ADA, ids::GENERAL, "one").unwrap();
    d.next_event("messageCreate");
    let before = d.gateway.status();
    let session_id = before.session_id.clone().expect("a session");
    let seq = before.sequence.expect("a sequence");

    d.sim.drop_connections();
    d.wait_notice("a resume to be scheduled", |n| {
        *n == Notice::Reconnect { resume: true }
    });
    // Dispatched while no connection is attached: must come back in the replay.
    d.sim.post_as(ids::LINUS, ids::GENERAL, "missed").unwrap();
    d.wait_connected();

    assert_eq!(d.sim.last_resume(), Some((session_id.clone(), seq)));
    assert_eq!(d.sim.identify_count(), 1);
    assert_eq!(d.sim.resume_count(), 1);
    assert!(d
        .sim
        .connection_urls()
        .last()
        .unwrap()
        .starts_with("/resume?"));
    let event = d.next_event("messageCreate");
    let EventBody::MessageCreate(m) = &event.body else {
        unreachable!()
    };
    assert_eq!(m.content, "missed");
    assert_eq!(d.gateway.status().session_id, Some(session_id));
}
