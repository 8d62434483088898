//! A new gateway asks `GET /gateway/bot` where to connect, identifies with
//! relay's intents, gets READY, and turns a MESSAGE_CREATE into `messageCreate`.

use relay_protocol::payload::EventBody;
use relay_runtime::discord_gateway::DiscordConfig;
use relay_tests::discord::*;

#[test]
fn identify_ready_then_a_message_becomes_a_link_event() {
    let sim = start_sim(sim_config());
    let config = DiscordConfig {
        gateway_url: None,
        ..discord_config(&sim)
    };
    let d = Driven::start_with(sim, config);
    d.wait_connected();

    let gateway_bot = d
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/gateway/bot"))
        .expect("GET /gateway/bot was asked");
    assert_eq!(gateway_bot.method, "GET");
    let auth = format!("Bot {}", d.sim.bot_token());
    assert_eq!(gateway_bot.header("authorization"), Some(auth.as_str()));
    assert!(gateway_bot
        .header("user-agent")
        .is_some_and(|ua| ua.starts_with("DiscordBot (")));

    let identify = d
        .sim
        .received_ops()
        .into_iter()
        .find(|op| op["op"] == 2)
        .expect("an Identify was sent");
    assert_eq!(identify["d"]["intents"], 36481);
    assert_eq!(identify["d"]["token"], d.sim.bot_token());
    assert_eq!(d.sim.identify_count(), 1);
    assert!(d.sim.connection_urls()[0].contains("v=10&encoding=json"));

    let status = d.gateway.status();
    assert!(status.connected);
    assert_eq!(status.user_id.as_deref(), Some(d.sim.bot_user_id()));
    assert_eq!(
        status.session_id.as_deref(),
        d.sim.session_ids().first().map(String::as_str)
    );

    let id = d
        .sim
        .post_as(ids::ADA, ids::GENERAL, "hello from Discord")
        .unwrap();
    let event = d.next_event("messageCreate");
    let EventBody::MessageCreate(m) = &event.body else {
        unreachable!()
    };
    assert_eq!(m.id, id);
    assert_eq!(m.channel_id, ids::GENERAL);
    assert_eq!(m.guild_id.as_deref(), Some(ids::GUILD));
    assert_eq!(m.author.id, ids::ADA);
    assert_eq!(m.content, "hello from Discord");
    assert!(!event.meta.trace_id.is_empty());
    assert!(event.meta.sent_at.ends_with('Z') && event.meta.sent_at.len() == 24);
    assert_eq!(event.meta.request_id, None);
}
