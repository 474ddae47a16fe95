use super::*;

/// The attempt the planner would ask for after `planned`: past any floor.
fn next(u: &Unanswered, asked: &Asked, planned: u32) -> u32 {
    u.floors()
        .get(asked)
        .map_or(planned, |&floor| planned.max(floor))
}

fn uid(s: &str) -> PodUid {
    PodUid(s.to_owned())
}

fn container(u: &str, name: &str) -> Asked {
    Asked::Container(uid(u), name.to_owned())
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn an_attempt_asked_without_an_answer_is_not_asked_for_again() {
    let u = Unanswered::in_memory();
    let main = container("aa11", "main");
    assert_eq!(next(&u, &main, 0), 0);
    u.asking(&main, 0);
    u.settle(&main, 0, Outcome::NoAnswer);
    assert_eq!(next(&u, &main, 0), 1, "the unanswered name is skipped");
    assert_eq!(next(&u, &main, 4), 4, "a later planned attempt stands");
    // other names of the same pod are untouched
    assert_eq!(next(&u, &container("aa11", "side"), 0), 0);
    assert_eq!(next(&u, &Asked::Sandbox(uid("aa11")), 0), 0);
}

#[test]
fn a_request_left_unanswered_by_a_killed_podvisor_moves_the_next_one_past_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("unanswered");
    let first = Unanswered::load(records.clone());
    first.asking(&Asked::Sandbox(uid("bb22")), 0);
    first.asking(&container("bb22", "main"), 2);
    drop(first); // killed mid-call: nothing settled

    let later = Unanswered::load(records.clone());
    assert_eq!(next(&later, &Asked::Sandbox(uid("bb22")), 0), 1);
    assert_eq!(next(&later, &container("bb22", "main"), 0), 3);
    assert_eq!(next(&later, &container("bb22", "main"), 5), 5);
    assert_eq!(next(&later, &container("cc33", "main"), 0), 0);
}

#[test]
fn an_answered_request_leaves_no_record_and_no_floor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("unanswered");
    let u = Unanswered::load(records.clone());
    let main = container("dd44", "main");
    u.asking(&main, 0);
    assert_eq!(
        files(&records),
        ["container_dd44_main"],
        "written before the call"
    );
    u.settle(&main, 0, Outcome::Answered);
    assert!(files(&records).is_empty());
    assert_eq!(next(&u, &main, 0), 0);
    assert_eq!(next(&Unanswered::load(records), &main, 0), 0);
}

#[test]
fn a_timed_out_request_keeps_its_record_for_the_next_podvisor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("unanswered");
    let u = Unanswered::load(records.clone());
    let sandbox = Asked::Sandbox(uid("ee55"));
    u.asking(&sandbox, 1);
    u.settle(&sandbox, 1, Outcome::NoAnswer);
    assert_eq!(files(&records), ["sandbox_ee55"]);
    assert_eq!(next(&Unanswered::load(records), &sandbox, 0), 2);
}

#[test]
fn an_answer_to_a_later_attempt_does_not_release_a_name_that_got_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("unanswered");
    let main = container("ff66", "main");
    Unanswered::load(records.clone()).asking(&main, 3);

    let later = Unanswered::load(records.clone());
    let attempt = next(&later, &main, 0);
    assert_eq!(attempt, 4);
    later.asking(&main, attempt);
    // refused (or created, then removed): nothing observed carries the attempts past 3
    later.settle(&main, attempt, Outcome::Answered);
    assert_eq!(
        next(&later, &main, 0),
        4,
        "attempt 3 is still not asked for"
    );
    let record = std::fs::read_to_string(records.join("container_ff66_main")).expect("record");
    assert_eq!(
        record, "3",
        "the record holds the attempt that got no answer"
    );
    assert_eq!(next(&Unanswered::load(records), &main, 0), 4);
}

#[test]
fn an_attempt_planned_below_the_floor_does_not_lower_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("unanswered");
    let main = container("fa77", "main");
    let u = Unanswered::load(records.clone());
    u.asking(&main, 5);
    u.settle(&main, 5, Outcome::NoAnswer);
    u.asking(&main, 1); // planned from an older look
    assert_eq!(
        std::fs::read_to_string(records.join("container_fa77_main")).expect("record"),
        "5"
    );
    u.settle(&main, 1, Outcome::Answered);
    assert_eq!(next(&Unanswered::load(records), &main, 0), 6);
}

#[test]
fn an_answer_for_an_older_attempt_keeps_the_floor_of_a_newer_unanswered_one() {
    let u = Unanswered::in_memory();
    let main = container("ab12", "main");
    u.settle(&main, 3, Outcome::NoAnswer);
    u.settle(&main, 1, Outcome::Answered);
    assert_eq!(next(&u, &main, 0), 4);
}

#[test]
fn unreadable_records_are_skipped_and_the_rest_still_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("unanswered");
    std::fs::create_dir_all(&records).expect("mkdir");
    std::fs::write(records.join("sandbox_0a0a"), "not a number").expect("write");
    std::fs::write(records.join("something-else"), "1").expect("write");
    std::fs::write(records.join("container_nounderscore"), "1").expect("write");
    std::fs::write(records.join("container_1b1b_main"), "7\n").expect("write");
    let u = Unanswered::load(records);
    assert_eq!(next(&u, &Asked::Sandbox(uid("0a0a")), 0), 0);
    assert_eq!(next(&u, &container("1b1b", "main"), 0), 8);
}

#[test]
fn a_manifest_uid_with_underscores_round_trips_through_its_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("unanswered");
    let main = container("my_own_uid-1", "main");
    Unanswered::load(records.clone()).asking(&main, 0);
    assert_eq!(next(&Unanswered::load(records), &main, 0), 1);
}

#[test]
fn a_name_that_could_leave_the_directory_is_kept_in_memory_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("unanswered");
    let u = Unanswered::load(records.clone());
    let odd = container("../../etc", "main");
    u.asking(&odd, 0);
    u.settle(&odd, 0, Outcome::NoAnswer);
    assert!(files(&records).is_empty());
    assert!(!dir.path().join("etc").exists());
    assert_eq!(next(&u, &odd, 0), 1);
}

#[test]
fn a_missing_directory_is_no_record_and_is_made_on_the_first_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("state/unanswered");
    let u = Unanswered::load(records.clone());
    assert_eq!(next(&u, &Asked::Sandbox(uid("2c2c")), 0), 0);
    u.asking(&Asked::Sandbox(uid("2c2c")), 0);
    assert_eq!(files(&records), ["sandbox_2c2c"]);
}

#[test]
fn a_timeout_a_broken_connection_or_a_reserved_name_is_no_answer_and_other_refusals_are_one() {
    let timeout: Result<(), RuntimeError> = Err(RuntimeError::Timeout {
        method: "CreateContainer",
        timeout: std::time::Duration::from_secs(120),
    });
    let gone: Result<(), RuntimeError> = Err(RuntimeError::Unavailable {
        method: "RunPodSandbox",
        message: "broken pipe".into(),
    });
    let refused: Result<(), RuntimeError> = Err(RuntimeError::Call {
        method: "CreateContainer",
        code: tonic::Code::Unknown,
        message: "failed to create containerd container: no such image".into(),
    });
    assert_eq!(outcome(&timeout), Outcome::NoAnswer);
    assert_eq!(outcome(&gone), Outcome::NoAnswer);
    assert_eq!(outcome(&refused), Outcome::Answered);
    for reserved in [
        // containerd 1.6
        "failed to reserve container name \"main_web_kube-system_aa11_2\": name \
         \"main_web_kube-system_aa11_2\" is reserved for \"4f1c\"",
        // CRI-O 1.37
        "error reserving ctr name k8s_main_web_kube-system_aa11_2 for id 4f1c: name is reserved",
    ] {
        let said: Result<(), RuntimeError> = Err(RuntimeError::Call {
            method: "CreateContainer",
            code: tonic::Code::Unknown,
            message: reserved.into(),
        });
        assert_eq!(outcome(&said), Outcome::NoAnswer, "{reserved}");
    }
    assert_eq!(outcome(&Ok::<(), RuntimeError>(())), Outcome::Answered);
}
