"""Table tests of tail-error detection: Kubernetes' messages match, real log output never does."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from follower.core.tail_errors import (
    DEFAULT_PATTERNS,
    MAX_BODY_CHARS,
    MAX_MESSAGE_CHARS,
    TailErrorMatcher,
    compile_patterns,
)

POD = "pipeline-covalent-postgres-pipe-fa28e4ef28fa4f7b9ffc62e162dmlm2"
NS = "pipelines"
CID = "8cdfe489333df0b5c4f1e7a9d2b3c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f"
POD_DIR = f"/var/log/pods/{NS}_{POD}_ae1b18d0-8544-4243-92c4-c390a40946dd/worker"
API_EXAMPLE = 'unable to upgrade connection: container not found ("worker")'

# Each default pattern's messages, worded exactly as the Kubernetes source formats them (see each
# pattern's `source`), filled in with this pipeline's names.
EXAMPLES: list[tuple[str, str]] = [
    (
        "container_waiting",
        f'container "worker" in pod "{POD}" is waiting to start: ContainerCreating',
    ),
    (
        "container_waiting",
        f'container "worker" in pod "{POD}" is waiting to start: PodInitializing',
    ),
    (
        "container_waiting",
        f'container "worker" in pod "{POD}" is waiting to start: CreateContainerConfigError',
    ),
    (
        "container_waiting",
        f'container "worker" in pod "{POD}" is waiting to start: image can\'t be pulled',
    ),
    (
        "container_waiting",
        f'Error from server (BadRequest): container "worker" in pod "{POD}" is waiting to start: '
        "trying and failing to pull image",
    ),
    ("container_waiting", f'container "worker" in pod "{POD}" is waiting to start - no logs yet'),
    ("container_terminated", f'container "worker" in pod "{POD}" is terminated'),
    ("container_not_available", f'container "worker" in pod "{POD}" is not available'),
    (
        "previous_container_not_found",
        f'previous terminated container "worker" in pod "{POD}" not found',
    ),
    ("kubelet_pod_no_logs", f'pod "{POD}" cannot be found - no logs available'),
    ("kubelet_pod_not_found", f'pod "{POD}" does not exist'),
    ("kubelet_container_not_found", f'container "worker" not found in pod "{POD}"'),
    ("container_logs_unavailable", f"unable to retrieve container logs for containerd://{CID}"),
    ("container_logs_unavailable", f"unable to retrieve container logs for cri-o://{CID}"),
    (
        "log_file_missing",
        f'failed to try resolving symlinks in path "{POD_DIR}/0.log": lstat {POD_DIR}: '
        "no such file or directory",
    ),
    (
        "log_file_missing",
        f'failed to open log file "{POD_DIR}/3.log": open {POD_DIR}/3.log: '
        "no such file or directory",
    ),
    (
        "cri_rpc_error",
        f'rpc error: code = NotFound desc = an error occurred when try to find container "{CID}": '
        "not found",
    ),
    ("upgrade_connection", API_EXAMPLE),
    ("upgrade_connection", "error: unable to upgrade connection: pod does not exist"),
    (
        "upgrade_connection",
        f"unable to upgrade connection: container worker not found in pod {POD}_{NS}",
    ),
    ("upgrade_connection", f"unable to upgrade connection: pod {POD}_{NS} not found"),
    ("upgrade_connection", f'unable to upgrade connection: pod not found ("{POD}_{NS}")'),
    ("pod_not_found", f'pods "{POD}" not found'),
    ("pod_not_found", f'Error from server (NotFound): pods "{POD}" not found'),
    ("pod_no_host", f"Error from server (BadRequest): pod {POD} does not have a host assigned"),
    ("container_name_required", f"a container name must be specified for pod {POD}"),
    (
        "container_name_required",
        f"a container name must be specified for pod {POD}, "
        "choose one of: [worker metrics-sidecar]",
    ),
    ("container_not_valid", f"container worker is not valid for pod {POD}"),
    ("resource_not_found", "the server could not find the requested resource"),
    (
        "resource_not_found",
        f"Error from server (NotFound): the server could not find the requested resource "
        f"( pods/log {POD})",
    ),
    (
        "internal_error",
        "Internal error occurred: Authorization error (user=kube-apiserver-kubelet-client, "
        "verb=get, resource=nodes, subresource=proxy)",
    ),
    (
        "kubelet_unreachable",
        f'Get "https://10.0.0.5:10250/containerLogs/{NS}/{POD}/worker?tailLines=500": '
        "dial tcp 10.0.0.5:10250: connect: connection refused",
    ),
    (
        "kubelet_unreachable",
        f'Error from server: Get "https://10.0.0.5:10250/containerLogs/{NS}/{POD}/worker": '
        "No agent available",
    ),
    ("error_dialing_backend", "error dialing backend: dial tcp 10.0.0.5:10250: i/o timeout"),
    ("no_agent_available", "No agent available"),
    (
        "egress_proxy_error",
        "proxy error from 127.0.0.1:8131 while dialing 10.0.0.5:10250, code 503: "
        "503 Service Unavailable",
    ),
]

# Patterns whose message ends in free text (the wrapped Go error); all others end on a fixed word,
# so anything after that word makes the body a log line.
OPEN_ENDED = {
    "log_file_missing",
    "cri_rpc_error",
    "internal_error",
    "kubelet_unreachable",
    "error_dialing_backend",
    "egress_proxy_error",
}
CLOSED_EXAMPLES = [(name, text) for name, text in EXAMPLES if name not in OPEN_ENDED]
BY_NAME = {pattern.name: pattern for pattern in DEFAULT_PATTERNS}
MESSAGES = [text for _, text in EXAMPLES]

matcher = TailErrorMatcher()


def test_every_default_pattern_has_an_example() -> None:
    """Adding a pattern without an example in EXAMPLES fails here."""
    assert {name for name, _ in EXAMPLES} == set(BY_NAME)


def test_pattern_names_are_unique_snake_case_with_a_go_source() -> None:
    """Every default pattern has a distinct snake_case name and cites the source it comes from."""
    names = [pattern.name for pattern in DEFAULT_PATTERNS]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in names)
    assert all(".go" in pattern.source for pattern in DEFAULT_PATTERNS)


@pytest.mark.parametrize(("name", "message"), EXAMPLES)
def test_example_matches_its_own_pattern(name: str, message: str) -> None:
    """Each example is matched by the pattern it documents, not just by some other one."""
    assert re.fullmatch(BY_NAME[name].regex, message)


@pytest.mark.parametrize("message", MESSAGES)
def test_matcher_returns_the_message(message: str) -> None:
    """A body that is exactly one known message is reported as that message."""
    assert matcher.match(message) == message


@pytest.mark.parametrize("message", MESSAGES)
def test_surrounding_whitespace_and_trailing_newline_are_allowed(message: str) -> None:
    """Leading and trailing blanks and a trailing newline are stripped from the reported message."""
    assert matcher.match(f"  \n{message}\r\n") == message


def test_api_documented_example_matches() -> None:
    """The Pipeline API docs' own example of a tail error is recognised."""
    assert matcher.match(API_EXAMPLE + "\n") == API_EXAMPLE


@pytest.mark.parametrize("message", MESSAGES)
def test_message_inside_a_multi_line_log_does_not_match(message: str) -> None:
    """A known message among real log lines is log output, wherever it appears."""
    for body in (
        f"INFO starting worker\n{message}\nINFO connected to destination\n",
        f"{message}\nINFO retrying\n",
        f"INFO starting worker\n{message}\n",
    ):
        assert matcher.match(body) is None


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize(
    "prefix",
    [
        "2026-05-02T09:14:07.123456789Z ",
        "2026-05-02 09:14:07,123 ",
        "ERROR ",
        "E0502 09:14:07.123456       1 reader.go:42] ",
        "level=error msg=",
        "[worker-3] ",
    ],
)
def test_message_behind_a_timestamp_or_level_does_not_match(prefix: str, message: str) -> None:
    """A line that starts with a timestamp, level or tag is a log line quoting the message."""
    assert matcher.match(prefix + message) is None


@pytest.mark.parametrize(("name", "message"), CLOSED_EXAMPLES)
def test_message_with_trailing_text_does_not_match(name: str, message: str) -> None:
    """Text after a message that ends on a fixed word makes the line something else."""
    assert matcher.match(f"{message} retrying in 5s") is None
    assert matcher.match(f"{message}.") is None


def test_application_error_line_mentioning_the_phrase_does_not_match() -> None:
    """The application's own error about an upgrade is log output, alone or among other lines."""
    line = "ERROR unable to upgrade connection: container not found in worker 3 retrying"
    assert matcher.match(line) is None
    assert matcher.match(f"INFO starting worker\n{line}\nINFO retry 1 of 5\n") is None
    assert matcher.match("unable to upgrade connection: container not found in worker 3") is None


def test_one_message_per_line_matches_when_every_line_is_one() -> None:
    """Several messages, one per non-empty line, are reported together, blank lines dropped."""
    first, second = API_EXAMPLE, f'pods "{POD}" not found'
    assert matcher.match(f"{first}\n\n  {second}  \n") == f"{first}\n{second}"


def test_one_message_and_one_log_line_do_not_match() -> None:
    """A single ordinary line next to a message makes the whole body log output."""
    assert matcher.match(f"{API_EXAMPLE}\nINFO connected to destination") is None


@pytest.mark.parametrize("body", ["", " ", "\n", " \r\n\t "])
def test_empty_body_is_not_a_tail_error(body: str) -> None:
    """A pod with no output yet has an empty tail, which is not an error."""
    assert matcher.match(body) is None


@pytest.mark.parametrize(
    "body",
    [
        'Unable to upgrade connection: container not found ("worker")',
        'UNABLE TO UPGRADE CONNECTION: CONTAINER NOT FOUND ("WORKER")',
        f'container "Worker" in pod "{POD}" is waiting to start: ContainerCreating',
        f'container "worker" in pod "{POD}" is waiting to start: containercreating',
        "no agent available",
        f'Pods "{POD}" not found',
    ],
)
def test_matching_is_case_sensitive(body: str) -> None:
    """Kubernetes' wording and names are case-sensitive, so other casings are not its messages."""
    assert matcher.match(body) is None


@pytest.mark.parametrize(
    "body",
    [
        'container "worker" in pod "pod one" is terminated',
        'container "" in pod "p" is terminated',
        'pods "p\\"q" not found',
        f'container "worker" in pod "{POD}" is waiting to start: Container Creating',
        "unable to retrieve container logs for containerd://not-hex",
    ],
)
def test_names_outside_kubernetes_syntax_do_not_match(body: str) -> None:
    """Quoted names must be Kubernetes names: lower-case letters, digits, '-' and '.'."""
    assert matcher.match(body) is None


def test_extra_patterns_from_config_match_whole_bodies() -> None:
    """A configured pattern adds to the defaults and is anchored on the whole body like them."""
    extra = TailErrorMatcher([r"pipeline paused by operator [a-z]+"])
    assert extra.match("pipeline paused by operator alice\n") == "pipeline paused by operator alice"
    assert extra.match(API_EXAMPLE) == API_EXAMPLE
    assert extra.match("INFO x\npipeline paused by operator alice") is None
    assert extra.match("pipeline paused by operator alice, resuming") is None
    assert matcher.match("pipeline paused by operator alice") is None


def test_extra_pattern_may_span_lines() -> None:
    """A configured pattern is tried on the whole body first, so it may match several lines."""
    extra = TailErrorMatcher([r"backend restarting\nplease wait"])
    assert extra.match("backend restarting\nplease wait\n") == "backend restarting\nplease wait"


def test_compile_patterns_keeps_order() -> None:
    """Configured patterns come back compiled, in the order given."""
    compiled = compile_patterns(["a+", "b[0-9]"])
    assert [pattern.pattern for pattern in compiled] == ["a+", "b[0-9]"]
    assert compile_patterns([]) == ()


@pytest.mark.parametrize("bad", ["(", "[a-", "*oops", "(?P<x>a)(?P<x>b)"])
def test_invalid_extra_regex_names_its_index(bad: str) -> None:
    """An invalid configured regex raises ValueError naming its index, the regex and the reason."""
    with pytest.raises(
        ValueError, match=r"^tail_errors\.patterns\[1\]: invalid regular expression "
    ) as info:
        TailErrorMatcher(["fine", bad])
    assert repr(bad) in str(info.value)
    assert str(info.value).count(":") >= 2


@pytest.mark.parametrize("bad", [".*", "", "(timeout)?", "x*"])
def test_extra_regex_matching_the_empty_string_is_refused(bad: str) -> None:
    """A configured regex that matches the empty string would match log output, so it is refused."""
    with pytest.raises(ValueError, match=r"^tail_errors\.patterns\[0\]: .*empty string"):
        compile_patterns([bad])


def test_extra_patterns_must_be_strings() -> None:
    """A non-string entry or a bare string instead of a list is reported, not compiled."""
    with pytest.raises(
        ValueError, match=r"^tail_errors\.patterns\[2\]: .*expected a string, got int"
    ):
        compile_patterns(["a", "b", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"^tail_errors\.patterns: expected a list"):
        compile_patterns("abc")


def test_long_message_is_cut_to_the_limit() -> None:
    """The reported message never exceeds MAX_MESSAGE_CHARS, however long the wrapped error."""
    body = "Internal error occurred: " + "x" * 3000
    message = matcher.match(body)
    assert message is not None
    assert len(message) == MAX_MESSAGE_CHARS
    assert body.startswith(message)


def test_body_over_the_size_limit_is_never_a_tail_error() -> None:
    """Only a body up to MAX_BODY_CHARS can be a tail error; one character more is log output."""
    fits = API_EXAMPLE + " " * (MAX_BODY_CHARS - len(API_EXAMPLE))
    assert matcher.match(fits) == API_EXAMPLE
    assert matcher.match(fits + " ") is None
    many = "\n".join([API_EXAMPLE] * (MAX_BODY_CHARS // len(API_EXAMPLE) + 1))
    assert matcher.match(many) is None


def test_megabyte_body_returns_none_quickly() -> None:
    """A 1 MB tail is rejected by its size alone, in well under a millisecond per call."""
    body = f"INFO {API_EXAMPLE} worker 3\n" * 15_000
    assert len(body) > 1_000_000
    start = time.perf_counter()
    for _ in range(1000):
        assert matcher.match(body) is None
    assert time.perf_counter() - start < 0.5


def test_adversarial_bodies_under_the_limit_stay_fast() -> None:
    """Near-miss bodies built to provoke backtracking are decided quickly by every pattern."""
    run = MAX_BODY_CHARS - 200
    bodies = [
        'container "' + "a" * run,
        f'container "worker" in pod "{"a-" * (run // 2)}',
        "unable to upgrade connection: container " + "a." * (run // 2),
        f"unable to upgrade connection: pod {'a' * run}_",
        f"a container name must be specified for pod x, choose one of: [{'a ' * (run // 2)}",
        'Get "https://' + "a" * run,
        'Get "https://h:1/containerLogs/' + "a/" * (run // 2),
        'failed to try resolving symlinks in path "/' + "a" * run,
        "proxy error from " + "a" * run,
        "the server could not find the requested resource ( pods/log " + "a" * run,
        "\n".join([API_EXAMPLE] * 60)[: MAX_BODY_CHARS - 10] + "x",
    ]
    start = time.perf_counter()
    for body in bodies:
        assert len(body) <= MAX_BODY_CHARS
        assert matcher.match(body) is None
    assert time.perf_counter() - start < 1.0


@given(st.datetimes(min_value=datetime(2000, 1, 1)), st.sampled_from(MESSAGES))
def test_timestamped_message_never_matches(when: datetime, message: str) -> None:
    """However the timestamp reads, a timestamped line quoting a message is log output."""
    assert matcher.match(f"{when.isoformat()}Z {message}") is None
    assert matcher.match(f"{when:%b %d %H:%M:%S} {message}") is None
