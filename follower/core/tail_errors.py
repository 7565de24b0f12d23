"""Is this pod's `logs` string a Kubernetes runtime error instead of log output?

While a pod is being scheduled, has crashed, is restarting or has been replaced, the Pipeline API
still answers 200 with `error: false`, and the pod's `logs` field holds the error its log request
met, e.g. `unable to upgrade connection: container not found ("worker")`. Treating that as a log
line would emit it as data and, worse, make the differ think the tail was replaced.

The default patterns are Kubernetes' own messages (each `source` names the file and format string
it comes from; docs/tail-errors.md has the table). A body is a tail error only if the WHOLE body is
such a message, or if every non-empty line is one: a real log that merely mentions one of these
phrases has other lines, a timestamp or a level in front of it, and so never matches. Everything
here is pure and bounded: bodies over `MAX_BODY_CHARS` are rejected before any regex runs, and no
pattern nests unbounded quantifiers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# Real tails are often hundreds of KB; every Kubernetes message below is well under 1 KiB, so a
# longer body is log output and is answered without running a single regex.
MAX_BODY_CHARS: Final = 4096
# The message is reported in events and diagnostics; cap it so a pathological body stays small.
MAX_MESSAGE_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class TailErrorPattern:
    """One known tail-error message.

    `regex` is matched with `re.fullmatch` against the whole stripped body (or against each line
    of a body whose every line is a tail error); `source` says where in Kubernetes it comes from.
    """

    name: str
    regex: str
    source: str


# --- building blocks -----------------------------------------------------------------------------
# Kubernetes object names are lower-case DNS labels / subdomains (RFC 1123): letters, digits, '-'
# and '.', starting and ending with a letter or digit, at most 253 characters. Go's %q of such a
# name is the name in double quotes, with nothing to escape. Matching is case-sensitive, as
# Kubernetes is. Ending on an alphanumeric also keeps "... pod web-1." (a sentence) from matching.
_NAME: Final = r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?"
_QNAME: Final = rf'"{_NAME}"'
# The kubelet's "pod full name" is `<name>_<namespace>` (kubecontainer.BuildPodFullName).
_FULL_NAME: Final = rf"{_NAME}_{_NAME}"
# kubectl prints API errors as "Error from server (Reason): msg" or "Error from server: msg", and
# other errors as "error: msg" (staging/src/k8s.io/kubectl/pkg/cmd/util/helpers.go,
# StandardErrorMessage / checkErr). A backend that shells out to kubectl passes these on.
_KUBECTL_PREFIX: Final = r"(?:Error from server(?: \([A-Za-z]{1,64}\))?: |error: )?"
# Container waiting reasons are CamelCase identifiers (ContainerCreating, PodInitializing,
# CrashLoopBackOff, CreateContainerConfigError, ...); the kubelet spells out two image-pull ones.
_WAITING_REASON: Final = (
    r"(?:[A-Z][A-Za-z]{0,63}|image can't be pulled|trying and failing to pull image)"
)
_GRPC_CODES: Final = (
    "Canceled|Unknown|InvalidArgument|DeadlineExceeded|NotFound|AlreadyExists|PermissionDenied"
    "|ResourceExhausted|FailedPrecondition|Aborted|OutOfRange|Unimplemented|Internal"
    "|Unavailable|DataLoss|Unauthenticated"
)


def _pattern(name: str, body: str, source: str) -> TailErrorPattern:
    """A default pattern: Kubernetes' message `body`, optionally behind kubectl's error prefix."""
    return TailErrorPattern(name=name, regex=f"{_KUBECTL_PREFIX}(?:{body})", source=source)


_KUBELET_PODS: Final = "pkg/kubelet/kubelet_pods.go"
_KUBELET_SERVER: Final = "pkg/kubelet/server/server.go"
_POD_STRATEGY: Final = "pkg/registry/core/pod/strategy.go"
_API_ERRORS: Final = "staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go"
_RESPONSE_CHECKER: Final = (
    "staging/src/k8s.io/apiserver/pkg/registry/generic/rest/response_checker.go"
)

DEFAULT_PATTERNS: Final[tuple[TailErrorPattern, ...]] = (
    # --- the kubelet: the container exists in the spec but has no log to give -------------------
    _pattern(
        "container_waiting",
        rf"container {_QNAME} in pod {_QNAME} is waiting to start"
        rf"(?:: {_WAITING_REASON}| - no logs yet)",
        f'{_KUBELET_PODS} validateContainerLogStatus: "container %q in pod %q is waiting to '
        'start: %v" (also ": image can\'t be pulled", ": trying and failing to pull image", '
        '" - no logs yet")',
    ),
    _pattern(
        "container_terminated",
        rf"container {_QNAME} in pod {_QNAME} is terminated",
        f'{_KUBELET_PODS} validateContainerLogStatus: "container %q in pod %q is terminated"',
    ),
    _pattern(
        "container_not_available",
        rf"container {_QNAME} in pod {_QNAME} is not available",
        f'{_KUBELET_PODS} validateContainerLogStatus: "container %q in pod %q is not available"',
    ),
    _pattern(
        "previous_container_not_found",
        rf"previous terminated container {_QNAME} in pod {_QNAME} not found",
        f'{_KUBELET_PODS} validateContainerLogStatus: "previous terminated container %q in pod '
        '%q not found"',
    ),
    _pattern(
        "kubelet_pod_no_logs",
        rf"pod {_QNAME} cannot be found - no logs available",
        f'{_KUBELET_PODS} GetKubeletContainerLogs: "pod %q cannot be found - no logs available"',
    ),
    _pattern(
        "kubelet_pod_not_found",
        rf"pod {_QNAME} does not exist",
        f'{_KUBELET_SERVER} getContainerLogs: "pod %q does not exist" (404)',
    ),
    _pattern(
        "kubelet_container_not_found",
        rf"container {_QNAME} not found in pod {_QNAME}",
        f'{_KUBELET_SERVER} getContainerLogs: "container %q not found in pod %q" (404)',
    ),
    # --- the kubelet's runtime layer: the container or its log file is gone ---------------------
    _pattern(
        "container_logs_unavailable",
        r"unable to retrieve container logs for [a-z][a-z0-9.+-]{0,31}://[0-9a-f]{1,128}",
        "pkg/kubelet/kuberuntime/kuberuntime_container.go GetContainerLogs: "
        '"unable to retrieve container logs for %v" (a ContainerID, type://id)',
    ),
    _pattern(
        "log_file_missing",
        r'failed to (?:try resolving symlinks in path|open log file) "/[^"\n]{0,1024}": .+',
        "staging/src/k8s.io/cri-client/pkg/logs/logs.go (formerly "
        'pkg/kubelet/kuberuntime/logs/logs.go) ReadLogs: "failed to try resolving symlinks in '
        'path %q: %v", "failed to open log file %q: %v"',
    ),
    _pattern(
        "cri_rpc_error",
        rf"rpc error: code = (?:{_GRPC_CODES}) desc = .+",
        'google.golang.org/grpc/internal/status/status.go Error(): "rpc error: code = %s desc = '
        '%s", how CRI (container runtime) errors reach the kubelet (pkg/kubelet/kuberuntime)',
    ),
    # --- exec / attach / port-forward through the SPDY upgrade ----------------------------------
    _pattern(
        "upgrade_connection",
        r"unable to upgrade connection: (?:"
        rf"container not found \({_QNAME}\)"
        r"|pod does not exist"
        rf'|pod not found(?: \("{_FULL_NAME}"\))?'
        rf"|container {_NAME} not found in pod {_FULL_NAME}"
        rf"|pod {_FULL_NAME} not found"
        r")",
        "staging/src/k8s.io/apimachinery/pkg/util/httpstream/spdy/roundtripper.go NewConnection: "
        f'"unable to upgrade connection: %s" around the kubelet\'s answer: {_KUBELET_PODS} '
        'GetExec "container not found (%q)", GetAttach "container %s not found in pod %s" / '
        f'"pod %s not found", GetPortForward "pod not found (%q)"; {_KUBELET_SERVER} getExec / '
        'getAttach "pod does not exist", getPortForward "pod not found"',
    ),
    # --- the API server: the pod or container is not (or no longer) what was asked for ----------
    _pattern(
        "pod_not_found",
        rf"pods {_QNAME} not found",
        f'{_API_ERRORS} NewNotFound: "%s %q not found" with the resource "pods"',
    ),
    _pattern(
        "pod_no_host",
        rf"pod {_NAME} does not have a host assigned",
        f'{_POD_STRATEGY} streamLocation / PortForwardLocation: "pod %s does not have a host '
        'assigned"',
    ),
    _pattern(
        "container_name_required",
        rf"a container name must be specified for pod {_NAME}"
        r"(?:, choose one of: \[[a-z0-9 .-]{0,4096}\])?",
        f'{_POD_STRATEGY} validateContainer: "a container name must be specified for pod %s", '
        '"... for pod %s, choose one of: %s"',
    ),
    _pattern(
        "container_not_valid",
        rf"container {_NAME} is not valid for pod {_NAME}",
        f'{_POD_STRATEGY} validateContainer: "container %s is not valid for pod %s"',
    ),
    _pattern(
        "resource_not_found",
        r"the server could not find the requested resource"
        rf"(?: \((?:[a-z]{{0,16}} )?pods(?:/[a-z]{{1,16}})?(?: {_NAME})?\))?",
        f'{_API_ERRORS} NewGenericServerResponse (404): "the server could not find the '
        'requested resource" + " (%s %s %s)"; raised by '
        f"{_RESPONSE_CHECKER} when the kubelet answers 404",
    ),
    _pattern(
        "internal_error",
        r"Internal error occurred: .+",
        f'{_API_ERRORS} NewInternalError: "Internal error occurred: %v"; raised by '
        f"{_RESPONSE_CHECKER} when the kubelet answers 500",
    ),
    # --- the API server cannot reach the node's kubelet -----------------------------------------
    _pattern(
        "kubelet_unreachable",
        r'Get "https?://[^"/\s]{1,300}/containerLogs/'
        rf'{_NAME}/{_NAME}/{_NAME}(?:\?[^"\s]{{0,2048}})?": .+',
        'Go net/url Error.Error(): "%s %q: %s" (Op, URL, Err), returned unchanged by '
        "staging/src/k8s.io/apiserver/pkg/registry/generic/rest/streamer.go "
        "LocationStreamer.InputStream when the request to the kubelet's /containerLogs fails",
    ),
    _pattern(
        "error_dialing_backend",
        r"error dialing backend: .+",
        "staging/src/k8s.io/apimachinery/pkg/util/proxy/upgradeaware.go dial: "
        '"error dialing backend: %v"',
    ),
    _pattern(
        "no_agent_available",
        r"No (?:agent|backend) available",
        "kubernetes-sigs/apiserver-network-proxy pkg/server/backend_manager.go ErrNotFound: "
        '"No agent available" (older releases: "No backend available"), the Konnectivity '
        "server having no agent for the node",
    ),
    _pattern(
        "egress_proxy_error",
        r"proxy error from [^\s,]{1,300} while dialing [^\s,]{1,300}, code [0-9]{3}: .+",
        "staging/src/k8s.io/apiserver/pkg/server/egressselector/egress_selector.go "
        'tunnelHTTPConnect: "proxy error from %s while dialing %s, code %d: %v"',
    ),
)

_DEFAULT_COMPILED: Final[tuple[re.Pattern[str], ...]] = tuple(
    re.compile(pattern.regex) for pattern in DEFAULT_PATTERNS
)


def compile_patterns(extra: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """Compile the user's extra patterns (`[tail_errors] patterns` in the config).

    Raises ValueError naming the offending index, e.g. `tail_errors.patterns[2]: invalid regular
    expression '(': missing ), unterminated subpattern at position 0`. A pattern that matches the
    empty string (such as `.*`) is refused too: it would call real log output an error.
    """
    if isinstance(extra, str):
        # A bare string is a Sequence[str] of its characters; say so instead of compiling each one.
        raise ValueError("tail_errors.patterns: expected a list of strings, got a single string")
    compiled: list[re.Pattern[str]] = []
    for index, source in enumerate(extra):
        where = f"tail_errors.patterns[{index}]"
        if not isinstance(source, str):
            raise ValueError(
                f"{where}: invalid regular expression {source!r}: "
                f"expected a string, got {type(source).__name__}"
            )
        try:
            pattern = re.compile(source)
        except re.error as exc:
            raise ValueError(f"{where}: invalid regular expression {source!r}: {exc}") from exc
        if pattern.fullmatch(""):
            raise ValueError(
                f"{where}: invalid regular expression {source!r}: it matches the empty string, "
                "so it would also match ordinary log output"
            )
        compiled.append(pattern)
    return tuple(compiled)


class TailErrorMatcher:
    """Decides whether a pod's `logs` string is a runtime error message rather than log output."""

    __slots__ = ("_patterns",)

    def __init__(self, extra: Sequence[str] = ()) -> None:
        self._patterns: tuple[re.Pattern[str], ...] = _DEFAULT_COMPILED + compile_patterns(extra)

    def match(self, logs: str) -> str | None:
        """Return the error message if `logs` is a tail error, else None.

        The whole stripped body must be one known message, or every non-empty line must be one.
        The message comes back stripped (lines joined with `\\n`) and cut to `MAX_MESSAGE_CHARS`.
        """
        if len(logs) > MAX_BODY_CHARS:
            return None
        body = logs.strip()
        if not body:
            # An empty tail is a pod with no output yet, not an error.
            return None
        # The whole body first: a user's pattern may span lines on purpose.
        if self._is_message(body):
            return body[:MAX_MESSAGE_CHARS]
        lines = [stripped for line in body.splitlines() if (stripped := line.strip())]
        if len(lines) > 1 and all(self._is_message(line) for line in lines):
            return "\n".join(lines)[:MAX_MESSAGE_CHARS]
        return None

    def _is_message(self, text: str) -> bool:
        return any(pattern.fullmatch(text) for pattern in self._patterns)
