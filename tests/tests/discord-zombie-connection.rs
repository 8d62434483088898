//! A connection whose heartbeats go unacknowledged is a zombie: the driver
//! closes it (keeping the session) and resumes on a new one.

use relay_tests::discord::*;

#[test]
fn unacknowledged_heartbeats_reconnect_and_resume() {
    let d = Driven::start(sim_config());
    let session_id = d.gateway.status().session_id.unwrap();
    d.sim.set_ack_heartbeats(false);
    d.wait_notice("the zombie to be detected", |n| {
        *n == Notice::Reconnect { resume: true }
    });
    d.sim.set_ack_heartbeats(true);
    d.wait_connected();
    assert_eq!(d.sim.resume_count(), 1);
    assert_eq!(d.sim.identify_count(), 1);
    assert_eq!(d.sim.last_resume().map(|r| r.0), Some(session_id));
    d.wait_notice("heartbeats to be acknowledged again", |n| {
        *n == Notice::HeartbeatAck
    });
}
