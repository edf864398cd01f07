//! Every refusal: a precondition, the command, the expected error — and nothing stored
//! changes (no row, no event).

mod common;

use common::refusal_cases::cases;
use common::*;
use kup_core::Command;
use kup_types::KubeUpgradeState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_leaves_the_store_unchanged() {
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    for case in cases {
        let h = Harness::new((case.cluster)()).await;
        h.prepare(&case).await;
        let before = (h.stored().await, h.events().await.len());
        let err = h
            .run(case.command.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{}: {:?} was accepted", case.name, case.command));
        let refusal = err
            .refusal()
            .unwrap_or_else(|| panic!("{}: not a refusal: {err}", case.name));
        assert!(
            (case.expect)(refusal),
            "{}: unexpected refusal {refusal:?}",
            case.name
        );
        let message = err.to_string();
        assert!(
            message.contains(case.says),
            "{}: message {message:?}",
            case.name
        );
        assert!(
            !message.contains('\n'),
            "{}: one line: {message:?}",
            case.name
        );
        let after = (h.stored().await, h.events().await.len());
        assert_eq!(before, after, "{}: the store changed", case.name);
    }
}

#[test]
fn the_patch_dispatcher_refuses_unknown_states() {
    for bad in [
        "bogus",
        "upgrade-started",
        "upgrading-kubelets",
        "upgraded-networking",
        "",
    ] {
        let r = Command::from_patch_state(bad).unwrap_err();
        assert_eq!(r.to_string(), format!("Invalid state {bad} supplied"));
    }
    assert_eq!(
        Command::from_patch_state("downloading-images"),
        Ok(Command::DownloadImages)
    );
    assert_eq!(
        Command::from_patch_state("upgrading-networking"),
        Ok(Command::UpgradeNetworking)
    );
    assert_eq!(
        Command::from_patch_state("upgrade-complete"),
        Ok(Command::Complete)
    );
    assert_eq!(
        Command::from_patch_state("upgrading-first-master-failed"),
        Ok(Command::MarkFailed(
            KubeUpgradeState::UpgradingFirstMasterFailed
        ))
    );
}
