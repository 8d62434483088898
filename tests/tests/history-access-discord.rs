//! History reads with `ACCESS=discord` (CONTRACT.md §8, §9): reading needs
//! `VIEW_CHANNEL` and `READ_MESSAGE_HISTORY` for the member, checked at the
//! edge (`403 missing_permission`, Discord never asked) and again by the
//! gateway. Ada is a plain member and cannot see `#moderators`; Margaret may
//! read it but not write.

use relay::config::AccessMode;
use relay_runtime::sim_discord::{ids, perms, Overwrite};
use relay_tests::history_rig::{ids_of, HistoryRig, WAIT};

#[test]
fn a_member_reads_only_what_discord_lets_them_read() {
    let rig = HistoryRig::start(AccessMode::Discord);
    let (ada, margaret) = (rig.token(ids::ADA), rig.token(ids::MARGARET));
    let secret = rig
        .sim
        .seed_message(ids::GRACE, ids::MODERATORS, "mods only", 60_000)
        .unwrap();
    rig.sim
        .seed_message(ids::GRACE, ids::GENERAL, "hello all", 60_000)
        .unwrap();

    let r = rig.read(Some(&ada), ids::MODERATORS, "");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "missing_permission");
    assert_eq!(r.json()["error"]["permission"], "VIEW_CHANNEL");
    assert_eq!(
        rig.discord_reads(),
        0,
        "a refused read never reaches Discord"
    );

    assert_eq!(
        ids_of(&rig.read(Some(&margaret), ids::MODERATORS, "")),
        vec![secret]
    );
    assert_eq!(ids_of(&rig.read(Some(&ada), ids::GENERAL, "")).len(), 1);

    // Without READ_MESSAGE_HISTORY Discord would answer an empty list; the
    // contract says 403.
    assert!(rig.sim.set_channel_overwrites(
        ids::GENERAL,
        vec![Overwrite::member(ids::ADA, 0, perms::READ_MESSAGE_HISTORY)],
    ));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = rig.read(Some(&ada), ids::GENERAL, "");
        if r.status == 403 {
            assert_eq!(r.json()["error"]["permission"], "READ_MESSAGE_HISTORY");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the overwrite never applied: {}",
            r.body
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A session that is no member has no permission anywhere.
    let stranger = rig.token("999999999999999999");
    assert_eq!(rig.read(Some(&stranger), ids::GENERAL, "").status, 403);
}
