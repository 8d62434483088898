//! A handled dispatch with a field of the wrong JSON type (a TYPING_START whose
//! `timestamp` is text) is dropped and reported to the observer for counting,
//! never published; the session goes on and the next good dispatch arrives.

use relay_protocol::payload::EventBody;
use relay_tests::discord::*;
use serde_json::json;

#[test]
fn a_wrongly_typed_dispatch_is_counted_not_published() {
    let d = Driven::start(sim_config());
    d.sim.dispatch(
        "TYPING_START",
        json!({"channel_id": ids::GENERAL, "guild_id": ids::GUILD, "user_id": ids::ADA,
               "timestamp": "<script>not a number</script>"}),
    );
    let notice = d.wait_notice("the skip", |n| matches!(n, Notice::Skipped(..)));
    assert_eq!(
        notice,
        Notice::Skipped(
            "TYPING_START".into(),
            "field `timestamp` has the wrong type".into()
        )
    );

    let id = d.sim.post_as(ids::ADA, ids::GENERAL, "still here").unwrap();
    // Everything published up to the message, in order: no typingStart among it.
    let event = wait_for(&d.events, "messageCreate", |e| {
        assert_ne!(
            e.body.type_name(),
            "typingStart",
            "the bad TYPING_START was published"
        );
        e.body.type_name() == "messageCreate"
    });
    let EventBody::MessageCreate(m) = &event.body else {
        unreachable!()
    };
    assert_eq!(m.id, id);
}
