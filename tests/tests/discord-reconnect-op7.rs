//! op 7 Reconnect: close with a code that keeps the session (not 1000/1001),
//! reconnect and resume.

use relay_tests::discord::*;

#[test]
fn op7_reconnects_and_resumes() {
    let d = Driven::start(sim_config());
    let session_id = d.gateway.status().session_id.unwrap();
    d.sim.send_reconnect();
    d.wait_notice("a resume to be scheduled", |n| {
        *n == Notice::Reconnect { resume: true }
    });
    d.wait_connected();
    assert_eq!(d.sim.resume_count(), 1);
    assert_eq!(d.sim.identify_count(), 1);
    assert_eq!(d.sim.last_resume().map(|r| r.0), Some(session_id));
}
