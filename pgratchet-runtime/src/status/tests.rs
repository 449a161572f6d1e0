use super::*;
use crate::Script;

fn known(version: i64) -> Migration {
    Migration::new(
        version,
        format!("m{version}"),
        Script::new(
            format!("{version}_m{version}.sql"),
            format!("SELECT {version};"),
            false,
        ),
        None,
    )
}

fn row(version: i64, state: State, checksum: &str) -> Row {
    Row {
        version,
        name: format!("m{version}"),
        checksum: checksum.to_owned(),
        state,
        applied_at: None,
        execution_time_ms: 0,
        error: None,
    }
}

/// Rows recorded as the migration's own checksum says, in `state`.
fn recorded(migration: &Migration, state: State) -> Row {
    row(migration.version(), state, migration.checksum())
}

fn states(statuses: &[Status]) -> Vec<(i64, State)> {
    statuses.iter().map(|s| (s.version, s.state)).collect()
}

#[test]
fn merge_tells_every_state_in_version_order() {
    let set = [known(1), known(2), known(3), known(5), known(6)];
    let rows = [
        recorded(&set[0], State::Applied),
        row(2, State::Applied, "edited"),
        row(4, State::Applied, "x"),
        recorded(&set[3], State::Failed),
        row(9, State::Applied, "x"),
    ];
    assert_eq!(
        states(&merge(&set, &rows)),
        [
            (1, State::Applied),
            (2, State::Modified),
            (3, State::Pending),
            (4, State::Unknown),
            (5, State::Failed),
            (6, State::Pending),
            (9, State::Unknown),
        ]
    );
    assert!(merge(&[], &[]).is_empty());
}

fn verdict(
    set: &[Migration],
    rows: &[Row],
    policy: Policy,
    target: Option<i64>,
    pooler: bool,
) -> Result<Verdict, Error> {
    judge(&merge(set, rows), policy, target, pooler)
}

#[test]
fn judge_applies_the_rules_of_the_contract() {
    let set = [known(1), known(2), known(3)];
    let applied = |m: &Migration| recorded(m, State::Applied);
    let strict = Policy {
        strict_unknown: true,
        ..Policy::default()
    };
    let out_of_order = Policy {
        allow_out_of_order: true,
        ..Policy::default()
    };
    // (rows, policy, target, pooler) -> pending, or the error's kind.
    type Case = (
        Vec<Row>,
        Policy,
        Option<i64>,
        bool,
        Result<Vec<i64>, &'static str>,
    );
    let cases: Vec<Case> = vec![
        (vec![], Policy::default(), None, false, Ok(vec![1, 2, 3])),
        (
            vec![applied(&set[0])],
            Policy::default(),
            Some(2),
            false,
            Ok(vec![2]),
        ),
        (
            vec![applied(&set[0]), applied(&set[1])],
            Policy::default(),
            None,
            false,
            Ok(vec![3]),
        ),
        // A newer release's version warns; with strict_unknown it refuses.
        (
            vec![applied(&set[0]), row(7, State::Applied, "x")],
            Policy::default(),
            None,
            false,
            Err("OutOfOrder"),
        ),
        (
            vec![
                applied(&set[0]),
                applied(&set[1]),
                applied(&set[2]),
                row(7, State::Applied, "x"),
            ],
            Policy::default(),
            None,
            false,
            Ok(vec![]),
        ),
        (
            vec![
                applied(&set[0]),
                applied(&set[1]),
                applied(&set[2]),
                row(7, State::Applied, "x"),
            ],
            strict,
            None,
            false,
            Err("Unknown"),
        ),
        // A removed file (unknown below the newest known) refuses.
        (
            vec![row(0, State::Applied, "x"), applied(&set[0])],
            Policy::default(),
            None,
            false,
            Err("Removed"),
        ),
        // Pending below the newest applied: out of order, unless allowed.
        (
            vec![applied(&set[0]), applied(&set[2])],
            Policy::default(),
            None,
            false,
            Err("OutOfOrder"),
        ),
        (
            vec![applied(&set[0]), applied(&set[2])],
            out_of_order,
            None,
            false,
            Ok(vec![2]),
        ),
        (
            vec![applied(&set[0]), row(2, State::Applied, "edited")],
            Policy::default(),
            None,
            false,
            Err("Modified"),
        ),
        (
            vec![recorded(&set[0], State::Failed)],
            Policy::default(),
            None,
            false,
            Err("Failed"),
        ),
        (
            vec![recorded(&set[0], State::Running)],
            Policy::default(),
            None,
            false,
            Err("Running"),
        ),
        // Behind a pooler a running row may be another starter's migration: pending.
        (
            vec![recorded(&set[0], State::Running)],
            Policy::default(),
            None,
            true,
            Ok(vec![1, 2, 3]),
        ),
        (
            vec![recorded(&set[0], State::Running)],
            Policy::default(),
            Some(0),
            true,
            Ok(vec![]),
        ),
    ];
    for (index, (rows, policy, target, pooler, expected)) in cases.into_iter().enumerate() {
        let got = verdict(&set, &rows, policy, target, pooler).map(|verdict| verdict.pending);
        match (&got, &expected) {
            (Ok(pending), Ok(want)) => assert_eq!(pending, want, "case {index}"),
            (Err(error), Err(kind)) => {
                assert!(
                    format!("{error:?}").starts_with(kind),
                    "case {index}: {error:?}"
                )
            }
            _ => panic!("case {index}: got {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn a_newer_release_only_warns_by_name() {
    let set = [known(1)];
    let rows = [
        recorded(&set[0], State::Applied),
        row(7, State::Applied, "x"),
    ];
    let verdict = verdict(&set, &rows, Policy::default(), None, false).expect("goes on");
    assert!(verdict.pending.is_empty());
    assert_eq!(verdict.warnings.len(), 1);
    assert!(
        verdict.warnings[0].contains("migration 7 `m7`"),
        "{:?}",
        verdict.warnings
    );
}
