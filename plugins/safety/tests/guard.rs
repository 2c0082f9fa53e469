//! Behaviour of the crisis guard: protocol and resources at high risk, locale selection,
//! negation, evidence spans and reply rules.

use psy_core::dialogue::{Dialogue, Message};
use psy_core::module::{Assessment, CrisisResource, ReplyRule, RiskLevel, RuleContext};
use psy_safety::{module, resources_for, Focus};

fn assess(text: &str) -> Assessment {
    module().assess(&Dialogue::from_message(text))
}

fn level(text: &str) -> RiskLevel {
    assess(text).risk.unwrap().level
}

fn rules_for(a: &Assessment, locale: &str, res: &[CrisisResource]) -> Vec<ReplyRule> {
    module().reply_rules(&RuleContext {
        assessment: a,
        locale,
        resources: res,
    })
}

fn require(rules: &[ReplyRule], id: &str) -> (Vec<Vec<String>>, String) {
    rules
        .iter()
        .find_map(|r| match r {
            ReplyRule::Require {
                id: i,
                any_of,
                repair,
                ..
            } if i == id => Some((any_of.clone(), repair.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no `{id}` rule in {rules:?}"))
}

#[test]
fn module_identity() {
    let m = module();
    assert_eq!(m.spec().module.id, psy_core::manifest::CRISIS_GUARD);
    assert_eq!(m.spec().module.kind, psy_core::module::ModuleKind::Safety);
    assert!(m
        .spec()
        .reasoning_steps
        .iter()
        .all(|s| s.stage == psy_core::module::Stage::Risk));
    assert!(m.spec().reasoning_steps.len() >= 6);
}

#[test]
fn high_risk_carries_protocol_and_us_resources() {
    let r = assess("I want to kill myself and I've got a rope in my car")
        .risk
        .unwrap();
    assert!(r.level >= RiskLevel::High, "{r:?}");
    assert_eq!(r.protocol.len(), 5);
    assert!(
        r.protocol.iter().any(|p| p.contains("988")),
        "{:?}",
        r.protocol
    );
    assert!(r.resources.iter().any(|x| x.contact.contains("988")));
    assert!(!r.rationale.is_empty() && r.rationale.ends_with('.'));
    assert!(!r.rationale.contains('\n'));
}

#[test]
fn imminent_with_plan_means_and_time() {
    assert_eq!(
        level("I've been saving up my pills and I'm going to take them all tonight"),
        RiskLevel::Imminent
    );
    assert_eq!(
        level("I want to die. I have the pills ready and I've written letters to my family."),
        RiskLevel::Imminent
    );
}

#[test]
fn low_levels_carry_no_protocol() {
    let r = assess("I feel hopeless about my job").risk.unwrap();
    assert_eq!(r.level, RiskLevel::Low);
    assert!(r.protocol.is_empty() && r.resources.is_empty());
    assert_eq!(level("This commute is killing me"), RiskLevel::None);
}

#[test]
fn negation_does_not_fire() {
    assert_eq!(level("I'm not suicidal, just tired."), RiskLevel::None);
    assert_eq!(level("I would never kill myself."), RiskLevel::None);
    assert!(level("I'm suicidal.") >= RiskLevel::Moderate);
    // Negation is scoped to its clause: a denial then a disclosure still fires.
    assert!(level("I'm not okay, I want to die.") >= RiskLevel::Moderate);
}

/// Cues added in the thirty-fourth session (rule 28c, from spent held-out sessions): a wish to
/// be dead told as what should happen or as disappointment at being alive, pills saved as a
/// pile; their negations stay quiet.
#[test]
fn a_wish_to_be_dead_in_other_words_and_tablets_saved() {
    for (text, at_least) in [
        (
            "The voice keeps telling me I'm useless and should die.",
            RiskLevel::Moderate,
        ),
        (
            "Honestly I'm kind of disappointed I'm still here.",
            RiskLevel::Moderate,
        ),
        (
            "I've been saving my sleeping tabs, got a little pile now.",
            RiskLevel::High,
        ),
        // (rule 29)
        ("I still feel like a burden on her.", RiskLevel::Moderate),
    ] {
        assert!(level(text) >= at_least, "{text}: {:?}", level(text));
    }
    for text in [
        "I don't think I should die for one mistake.",
        "I'm not disappointed I'm still here, I'm relieved.",
        "I'm saving up for a holiday and got a little pile of books to read.",
        "I don't feel like a burden on her any more.",
    ] {
        assert_eq!(level(text), RiskLevel::None, "{text}");
    }
}

#[test]
fn evidence_spans_point_at_the_text() {
    let text = "Work has been awful. Honestly I just want to end it all. I bought a rope.";
    let r = assess(text).risk.unwrap();
    assert!(r.level >= RiskLevel::High);
    let mut saw = Vec::new();
    for e in &r.evidence {
        assert_eq!(&text[e.evidence.start..e.evidence.end], e.evidence.text);
        assert_eq!(e.evidence.message, 0);
        saw.push(e.evidence.text.to_lowercase());
    }
    assert!(saw.contains(&"end it all".to_string()), "{saw:?}");
    assert!(saw.iter().any(|s| s.contains("rope")), "{saw:?}");
    // Buying a rope is a preparatory act; with thoughts of suicide that is imminent risk.
    assert_eq!(r.level, RiskLevel::Imminent);
    let top = &r.evidence[0];
    assert_eq!(top.level, r.level);
    assert_eq!(top.rule, "preparation-with-ideation");
}

#[test]
fn spans_index_the_right_message_in_a_dialogue() {
    let d = Dialogue::new(vec![
        Message::user("Things have been rough."),
        Message::assistant("I'm here. What's been happening?"),
        Message::user("I keep thinking everyone would be better off without me."),
    ]);
    let r = module().assess(&d).risk.unwrap();
    assert_eq!(r.level, RiskLevel::Moderate);
    let e = &r.evidence[0];
    assert_eq!(e.evidence.message, 2);
    assert_eq!(
        &d.messages[2].content[e.evidence.start..e.evidence.end],
        "better off without me"
    );
}

#[test]
fn earlier_disclosures_still_count_and_recent_time_escalates() {
    let d = Dialogue::new(vec![
        Message::user("I want to die."),
        Message::assistant("Thank you for telling me. Can you say more?"),
        Message::user("I'm going to do it tonight."),
    ]);
    assert!(module().assess(&d).risk.unwrap().level >= RiskLevel::High);
}

#[test]
fn third_party_is_elevated_and_oriented_to_the_friend() {
    let a = assess("My friend said she wants to kill herself.");
    let r = a.risk.clone().unwrap();
    assert_eq!(r.level, RiskLevel::Moderate);
    assert!(
        r.rationale.contains("someone the client knows"),
        "{}",
        r.rationale
    );
    let rules = rules_for(&a, "US", &[]);
    let (_, repair) = require(&rules, "safety-check-in");
    assert!(repair.contains("Is the person safe right now"), "{repair}");

    let a = assess("My friend just told me she took a whole bottle of pills.");
    let r = a.risk.clone().unwrap();
    assert!(r.level >= RiskLevel::High, "{r:?}");
    assert_eq!(
        psy_safety::focus_of(psy_safety::rules(), &r),
        Focus::ThirdParty
    );
    let (_, repair) = require(&rules_for(&a, "US", &[]), "crisis-protocol");
    assert!(repair.contains("they help people who are worried about someone else"));
}

/// "end his life", "take her own life": the phrase names whose life, so it is about that person
/// even without "he said"; the client's own act on someone else's pills stays the client's.
#[test]
fn a_life_named_as_someone_elses_is_theirs_and_their_pills_are_not() {
    for other in [
        "A patient told me today he'd been planning to end his life; I've reported it.",
        "my sister tried to take her own life last night",
    ] {
        let r = assess(other).risk.unwrap();
        assert_eq!(
            psy_safety::focus_of(psy_safety::rules(), &r),
            Focus::ThirdParty,
            "{other}: {r:?}"
        );
    }
    assert!(level("I want to end my life today") >= RiskLevel::High);
    assert_eq!(
        level("I took all her pills an hour ago"),
        RiskLevel::Imminent
    );
}

#[test]
fn reply_rule_at_high_risk_has_question_resources_and_a_standalone_repair() {
    let a = assess(
        "I don't see the point anymore. I've been thinking about killing myself and I have pills saved up.",
    );
    assert_eq!(a.risk.as_ref().unwrap().level, RiskLevel::High);
    let rules = rules_for(&a, "US", &[]);
    // The module's always-on rule stays.
    assert!(rules.iter().any(|r| r.id() == "no-minimising"));
    let (any_of, repair) = require(&rules, "crisis-protocol");
    assert_eq!(any_of.len(), 2);
    assert!(any_of[1].contains(&"988".to_string()), "{:?}", any_of[1]);
    // The repair satisfies its own rule: one phrase of each group appears in it.
    let low = repair.to_lowercase();
    for group in &any_of {
        assert!(
            group.iter().any(|p| low.contains(p)),
            "{group:?} not in {repair}"
        );
    }
    assert!(repair.contains("988") && repair.contains("911"));
    assert!(repair.split_whitespace().count() > 60);
}

#[test]
fn imminent_risk_urges_emergency_services_and_poison_control_without_asking_again() {
    let a = assess("I took all my pills an hour ago. I feel sleepy. Just wanted to say goodbye.");
    assert_eq!(a.risk.as_ref().unwrap().level, RiskLevel::Imminent);
    let (any_of, repair) = require(&rules_for(&a, "US", &[]), "crisis-protocol");
    assert_eq!(
        any_of,
        [vec!["911".to_string()], vec!["1-800-222-1222".to_string()]]
    );
    assert!(repair.contains("call 911 now"), "{repair}");
    assert!(repair.contains("Poison Help on 1-800-222-1222"), "{repair}");
    assert!(repair.contains("unlock your door"), "{repair}");
    assert!(repair.contains("988"), "{repair}");
    assert!(!repair.contains("thinking of ending your life"), "{repair}");
    // The protocol steps of the prompt follow the same tier.
    let steps = a.risk.as_ref().unwrap().protocol.join(" ");
    assert!(steps.contains("call 911 now") && steps.contains("1-800-222-1222"));

    // Each locale gets its own emergency number; the UK has no poison line to name.
    let (any_of, repair) = require(&rules_for(&a, "UK", &[]), "crisis-protocol");
    assert_eq!(any_of, [vec!["999".to_string(), "112".to_string()]]);
    assert!(repair.contains("call 999 or 112 now") && repair.contains("116 123"));
    assert!(
        !repair.contains("  ") && !repair.contains("Poison"),
        "{repair}"
    );
    for (locale, emergency, poison) in [
        ("IE", "call 112 or 999 now", "01 809 2166"),
        ("CA", "call 911 now", "1-844-764-7669"),
        ("AU", "call 000 now", "13 11 26"),
    ] {
        let (_, repair) = require(&rules_for(&a, locale, &[]), "crisis-protocol");
        assert!(
            repair.contains(emergency) && repair.contains(poison),
            "{repair}"
        );
    }
    let (_, repair) = require(&rules_for(&a, "de-DE", &[]), "crisis-protocol");
    assert!(repair.contains("call 112 now"), "{repair}");
    // Every tier's text satisfies its own rule.
    for locale in ["US", "UK", "IE", "CA", "AU", "DE", "JP"] {
        let (any_of, repair) = require(&rules_for(&a, locale, &[]), "crisis-protocol");
        for group in &any_of {
            assert!(
                group.iter().any(|p| repair.to_lowercase().contains(p)),
                "{locale}: {group:?}"
            );
        }
    }
}

#[test]
fn moderate_gets_a_check_in_and_none_gets_nothing() {
    let a = assess("Sometimes I wish I could go to sleep and not wake up.");
    assert_eq!(a.risk.as_ref().unwrap().level, RiskLevel::Moderate);
    let rules = rules_for(&a, "US", &[]);
    let (any_of, repair) = require(&rules, "safety-check-in");
    assert_eq!(any_of.len(), 1);
    assert!(any_of[0].iter().any(|p| repair.to_lowercase().contains(p)));
    let a = assess("I'm dying to see that movie");
    let rules = rules_for(&a, "US", &[]);
    assert!(rules
        .iter()
        .all(|r| !matches!(r, ReplyRule::Require { .. })));
}

#[test]
fn harm_to_others_uses_its_own_protocol() {
    let a = assess("I'm going to hurt him, I know where he lives and I have a knife.");
    let r = a.risk.clone().unwrap();
    assert!(r.level >= RiskLevel::High, "{r:?}");
    assert_eq!(psy_safety::focus_of(psy_safety::rules(), &r), Focus::Others);
    let (_, repair) = require(&rules_for(&a, "UK", &[]), "crisis-protocol");
    assert!(repair.contains("is anyone in danger right now"), "{repair}");
    assert!(
        repair.contains("116 123") && repair.contains("999"),
        "{repair}"
    );
}

#[test]
fn locale_selection() {
    let uk = resources_for("UK", &[]);
    assert_eq!(uk[0].name, "Samaritans");
    assert!(uk[0].contact.contains("116 123"));
    assert_eq!(resources_for("en-GB", &[])[0].name, "Samaritans");
    assert_eq!(resources_for("ie", &[])[0].name, "Samaritans");
    assert!(resources_for("CA", &[])[0].contact.contains("988"));
    assert!(resources_for("AU", &[])[0].contact.contains("13 11 14"));
    assert!(resources_for("en_US", &[])[0].contact.contains("988"));
    let unknown = resources_for("FR", &[]);
    assert_eq!(unknown.len(), 1);
    assert!(unknown[0].name.contains("emergency"));
    assert!(unknown[0].contact.contains("112"));
}

#[test]
fn manifest_resources_replace_builtins_for_their_locale_only() {
    let manifest = vec![
        CrisisResource {
            locale: "uk".into(),
            name: "Shout".into(),
            contact: "text SHOUT to 85258".into(),
        },
        CrisisResource {
            locale: "FR".into(),
            name: "3114".into(),
            contact: "call 3114".into(),
        },
    ];
    let uk = resources_for("UK", &manifest);
    assert_eq!(uk.len(), 1);
    assert_eq!(uk[0].name, "Shout");
    assert_eq!(resources_for("FR", &manifest)[0].contact, "call 3114");
    assert_eq!(
        resources_for("US", &manifest)[0].name,
        "988 Suicide & Crisis Lifeline"
    );

    let a = assess(
        "I don't see the point anymore. I've been thinking about killing myself and I have pills saved up.",
    );
    let (any_of, repair) = require(&rules_for(&a, "UK", &manifest), "crisis-protocol");
    assert!(
        repair.contains("85258") && !repair.contains("988"),
        "{repair}"
    );
    assert!(any_of[1].contains(&"85258".to_string()));
    // Unknown locale without manifest entries: emergency services, no invented number.
    let (_, repair) = require(&rules_for(&a, "JP", &[]), "crisis-protocol");
    assert!(repair.contains("local emergency number"), "{repair}");
    assert!(!repair.contains("988"));
}

#[test]
fn lookalikes_stay_at_most_low() {
    for t in [
        "I killed it at the presentation",
        "I'd kill for a coffee",
        "My dad died last year and I miss him",
        "I'm writing a story where a character wants to die",
        "I volunteer for a suicide prevention hotline",
        "How do I support someone who is suicidal?",
        "My uncle killed himself when I was young",
    ] {
        assert!(level(t) <= RiskLevel::Low, "{t}: {:?}", assess(t).risk);
    }
}

#[test]
fn slang_and_typos() {
    for t in [
        "kms",
        "i want to unalive myself",
        "thinking about sewerslide",
        "i'm feeling suicdal",
    ] {
        assert!(level(t) >= RiskLevel::Moderate, "{t}");
    }
}

#[test]
fn past_history_is_lower_than_current() {
    let past = level("I attempted suicide when I was 16, I've been fine for years");
    assert!(
        past >= RiskLevel::Low && past <= RiskLevel::Moderate,
        "{past:?}"
    );
    assert!(level("I attempted suicide last week") >= RiskLevel::High);
}

#[test]
fn a_past_attempt_alone_is_history_and_joins_what_is_current() {
    // Resolved and told as history: at most low (the history signal is kept for combinations).
    for t in [
        "Seven years since I tried to take my own life. I run a peer support group on Tuesdays.",
        "i tried to kill myself in 2018 and honestly my life is so different these past months",
        "I overdosed on my tablets back in uni. These days I'm studying to be a nurse.",
    ] {
        assert!(level(t) <= RiskLevel::Low, "{t}: {:?}", level(t));
    }
    // The old feelings returning: moderate; with current thoughts of suicide: high.
    let back = "I attempted suicide years ago. Losing my job has brought those feelings back.";
    assert_eq!(level(back), RiskLevel::Moderate, "{back}");
    let current =
        "I tried to kill myself when I was 20 and lately I keep thinking about killing myself";
    assert!(level(current) >= RiskLevel::High, "{current}");
    // A current marker in the sentence wins over a past one, and a time to come is not a past.
    assert!(level("Years ago I self-harmed and last night I tried to overdose") >= RiskLevel::High);
    assert!(level("I overdosed an hour ago, in 20 minutes it will be too late") >= RiskLevel::High);
}

#[test]
fn training_replies_to_high_risk_messages_must_carry_the_protocol() {
    use psy_core::module::SampleView;
    let guard = module();
    let crisis = Dialogue::from_message("i want to kill myself. i bought a rope yesterday");
    let review = |d: &Dialogue, reply: &str| {
        guard.review_sample(&SampleView {
            dialogue: d,
            reasoning: "",
            reply,
        })
    };
    let skipped = review(&crisis, "That sounds hard. What has your week been like?");
    let reason = skipped.expect_err("a reply that ignores the crisis is dropped");
    assert!(reason.contains("crisis-protocol"), "{reason}");
    let a = guard.assess(&crisis);
    let (_, repair) = require(&rules_for(&a, "US", &[]), "crisis-protocol");
    let answered = format!("I'm really glad you told me. {repair}");
    assert_eq!(review(&crisis, &answered), Ok(()));
    // A reply that takes the crisis up in its own words (a resource, a question about
    // intent) is kept; at inference the guard completes the protocol. This message rates
    // `imminent` (intent and means at hand), whose protocol asks for emergency services.
    assert_eq!(a.risk.as_ref().map(|r| r.level), Some(RiskLevel::Imminent));
    let own_words = "Thank you for telling me. Do you have any intention of acting on this? \
                     If you might, call 911 right away.";
    assert_eq!(review(&crisis, own_words), Ok(()));
    // Below high risk the guard has nothing to say about a training reply.
    let calm = Dialogue::from_message("Work has been stressful but I'm managing.");
    assert_eq!(review(&calm, "What has helped so far?"), Ok(()));
}

/// A second turn at high after one that got the protocol takes the same steps in other words,
/// and that text meets the rule it repairs on its own.
#[test]
fn the_turn_after_the_protocol_gets_it_in_other_words() {
    let first = "I don't see the point anymore. I've been thinking about killing myself and I have pills saved up.";
    let one = assess(first);
    assert_eq!(one.risk.as_ref().unwrap().level, RiskLevel::High);
    let (_, repair_once) = require(&rules_for(&one, "US", &[]), "crisis-protocol");
    let two = module().assess(&Dialogue::new(vec![
        Message::user(first),
        Message::assistant(repair_once.clone()),
        Message::user(
            "I still have the pills next to me and I keep thinking about killing myself.",
        ),
    ]));
    let risk = two.risk.as_ref().unwrap();
    assert_eq!(risk.level, RiskLevel::High, "{risk:?}");
    let (any_of, repair_again) = require(&rules_for(&two, "US", &[]), "crisis-protocol");
    assert_ne!(repair_again, repair_once);
    assert!(
        repair_again.contains("again") && repair_again.contains("988"),
        "{repair_again}"
    );
    for group in &any_of {
        assert!(
            psy_core::reply_rules::group_present(group, &repair_again),
            "{group:?} not in {repair_again}"
        );
    }
    // The first high turn of a session gets the full text.
    assert!(
        repair_once.starts_with("I'm really glad you told me"),
        "{repair_once}"
    );
}

/// A change the client reports after a crisis (`safe-change`, which can end the session's carry)
/// is read only when it happened: not in a conditional, not negated.
#[test]
fn a_change_that_made_the_client_safe_is_read_only_when_it_happened() {
    let changes = |text: &str| -> Vec<String> {
        assess(text)
            .risk
            .unwrap()
            .evidence
            .iter()
            .filter(|e| e.rule == "protective" && e.category == "safe-change")
            .map(|e| e.evidence.text.clone())
            .collect()
    };
    assert_eq!(
        changes("ok. my mum came to get me, we're at hers"),
        ["mum came", "came to get me", "we're at hers"]
    );
    assert_eq!(changes("im in a&e now"), ["in a&e"]);
    assert!(changes("if my mum came to get me i'd be ok").is_empty());
    assert!(changes("nobody is with me").is_empty());
    // The means beside the change: a move toward them, not away.
    assert!(changes("I'm home now where the pills are.").is_empty());
    assert_eq!(
        changes("my sister took the pills off me"),
        ["sister took the pills", "took the pills off me"]
    );
    // Means taken by someone else count; by the client, never.
    assert_eq!(
        changes("she's taken the knife to her car"),
        ["she's taken the knife"]
    );
    assert!(changes("I took the knife to my room").is_empty());
}
