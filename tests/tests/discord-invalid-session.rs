//! op 9 Invalid Session: `d: true` resumes, `d: false` identifies a new session
//! (after the session's 1–5 s wait and 5 s identify spacing, so that case takes
//! about 5 s).

use relay_tests::discord::*;

#[test]
fn resumable_invalid_session_resumes() {
    let d = Driven::start(sim_config());
    d.sim.invalidate_session(true);
    d.wait_notice("a resume to be scheduled", |n| {
        *n == Notice::Reconnect { resume: true }
    });
    d.wait_connected();
    assert_eq!(d.sim.resume_count(), 1);
    assert_eq!(d.sim.identify_count(), 1);
}

#[test]
fn non_resumable_invalid_session_identifies_again() {
    let d = Driven::start(sim_config());
    let old = d.gateway.status().session_id.unwrap();
    d.sim.invalidate_session(false);
    d.wait_notice("a new session to be scheduled", |n| {
        *n == Notice::Reconnect { resume: false }
    });
    // Identify spacing (5 s) is longer than the standard wait.
    wait_within(&d.notices, REIDENTIFY_WAIT, "the new session", |n| {
        *n == Notice::Connected(true)
    });
    assert_eq!(d.sim.identify_count(), 2);
    assert_eq!(d.sim.resume_count(), 0);
    let new = d.gateway.status().session_id.unwrap();
    assert_ne!(new, old);
}
