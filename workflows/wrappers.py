"""Fixed shell scripts that run the upstream builders (Kaniko, BuildKit) like our own steps.

The upstream images have no Python, so `build-kaniko` and `build-buildkit` run one of
these POSIX sh scripts (busybox in both images) with every value as a positional
parameter: nothing from a request is ever pasted into the script text (Argo substitutes
`{{...}}` textually, so that would be shell injection). Each script follows the step
interface of `build-runner` (steps/build_runner.py): the full log goes to `BUILD_LOG_PATH`
(and to the pod log), and `--out` gets `exit-code`, `log-tail` (last 4 KiB), `archive`
and `digest` (names from `steps.contract.STEPS["build-runner"]`), then the script exits
with the builder's code.

Positional parameters, in order (`ARGV`): output dir, log file, archive path, workspace,
context, dockerfile, destination, build-args JSON, labels JSON; anything after that is
passed to the builder as flags (the cache flags render adds from the configuration).
"""

from __future__ import annotations

__all__ = ["ARGV", "BUILDKIT", "KANIKO"]

ARGV = ("out", "log", "archive", "workspace", "context", "dockerfile", "destination", "build_args", "labels")

# Decodes a JSON object of strings (the build-args and labels parameters) into one
# `PREFIX KEY=VALUE` record per member, each ended by the unit separator \037, which the
# contract forbids inside values (steps.contract._CONTROL). busybox awk, no jq needed.
_DECODER = r"""
function fail(msg) { printf "%s: %s\n", what, msg > "/dev/stderr"; exit 2 }
function hex(h,   k, c, v) {
  v = 0
  for (k = 1; k <= 4; k++) {
    c = index("0123456789abcdef", tolower(substr(h, k, 1)))
    if (!c) fail("bad \\u escape")
    v = v * 16 + c - 1
  }
  return v
}
function utf8(c) {
  if (c < 128) return sprintf("%c", c)
  if (c < 2048) return sprintf("%c%c", 192 + int(c / 64), 128 + c % 64)
  if (c < 65536) return sprintf("%c%c%c", 224 + int(c / 4096), 128 + int(c / 64) % 64, 128 + c % 64)
  return sprintf("%c%c%c%c", 240 + int(c / 262144), 128 + int(c / 4096) % 64, 128 + int(c / 64) % 64, 128 + c % 64)
}
function skip() { while (substr(s, i, 1) ~ /^[ \t\n\r]$/) i++ }
function str(   o, c, e, cp, lo) {
  if (substr(s, i, 1) != "\"") fail("expected a string")
  i++; o = ""
  for (;;) {
    c = substr(s, i, 1)
    if (c == "") fail("unterminated string")
    if (c == "\"") { i++; return o }
    if (c != "\\") { o = o c; i++; continue }
    e = substr(s, i + 1, 1); i += 2
    if (e == "n") o = o "\n"; else if (e == "t") o = o "\t"; else if (e == "r") o = o "\r"
    else if (e == "b") o = o "\b"; else if (e == "f") o = o "\f"
    else if (e == "u") {
      cp = hex(substr(s, i, 4)); i += 4
      if (cp >= 55296 && cp < 56320 && substr(s, i, 2) == "\\u") {  # a surrogate pair
        lo = hex(substr(s, i + 2, 4)); i += 6
        cp = 65536 + (cp - 55296) * 1024 + lo - 56320
      }
      o = o utf8(cp)
    } else o = o e
  }
}
{ s = s $0 "\n" }
END {
  i = 1; skip()
  if (substr(s, i, 1) != "{") fail("expected a JSON object")
  i++; skip()
  if (substr(s, i, 1) == "}") exit 0
  for (;;) {
    skip(); k = str(); skip()
    if (substr(s, i, 1) != ":") fail("expected a colon")
    i++; skip(); v = str(); skip()
    printf "%s%s=%s\037", prefix, k, v
    c = substr(s, i, 1); i++
    if (c == "}") exit 0
    if (c != ",") fail("expected a comma or a closing brace")
  }
}
"""

_PROLOGUE = r"""set -u
out=$1 log=$2 archive=$3 ws=$4 ctx=$5 df=$6 dest=$7 build_args=$8 labels=$9
shift 9
mkdir -p "$out"
: > "$log"
finish() { tail -c 4096 "$log" > "$out/log-tail"; printf '%s' "$1" > "$out/exit-code"; exit "$1"; }
# validate rejected bad JSON before approval already; this only keeps the builder's argv honest.
decode() { printf '%s' "$3" | awk -v what="$1" -v prefix="$2" "$decoder" 2>> "$log"; }
ba=$(decode build-args "$build_arg" "$build_args") || { cat "$log" >&2; finish 2; }
lb=$(decode labels "$label" "$labels") || { cat "$log" >&2; finish 2; }
case "$ctx" in git://* | https://* | /*) ;; *) ctx="$ws/$ctx" ;; esac
"""

# Split the decoded records on the unit separator only, and never glob them.
_SPLIT = r"""set -f
IFS=$(printf '\037')
"""

# Run the builder with the log in the pod log and in $log; the exit code survives the pipe.
_RUN = r"""unset IFS
{ "$@" 2>&1; printf '%s' "$?" > "$out/exit-code"; } | tee "$log"
tail -c 4096 "$log" > "$out/log-tail"
rc=$(cat "$out/exit-code")
[ "$rc" = 0 ] || exit "$rc"
"""

_KANIKO = r"""build_arg=--build-arg= label=--label=
""" + _PROLOGUE + r"""layout="$archive.layout"
rm -rf "$layout"
case "$ctx" in git://* | https://*) kctx=$ctx ;; *.tar.gz | *.tgz) kctx="tar://$ctx" ;; *) kctx="dir://$ctx" ;; esac
""" + _SPLIT + r"""set -- /kaniko/executor --context="$kctx" --dockerfile="$df" --destination="$dest" --no-push \
  --oci-layout-path="$layout" "$@" $ba $lb
""" + _RUN + r"""# An OCI layout directory, tarred, is an OCI archive (what skopeo's oci-archive: reads).
tar -cf "$archive" -C "$layout" . || finish 1
sed -n 's/.*"digest": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' "$layout/index.json" \
  | head -n 1 | tr -d '\n' > "$out/digest"
rm -rf "$layout"
printf '%s' "$archive" > "$out/archive"
"""

_BUILDKIT = r"""build_arg=--opt=build-arg: label=--opt=label:
""" + _PROLOGUE + r"""meta="$out/.metadata.json"
case "$ctx" in
  git://* | https://*) set -- --opt=context="$ctx" --opt=filename="$df" "$@" ;;
  *) set -- --local=context="$ctx" --local=dockerfile="$(dirname "$ctx/$df")" --opt=filename="$(basename "$df")" "$@" ;;
esac
""" + _SPLIT + r"""set -- buildctl-daemonless.sh build --progress=plain --frontend=dockerfile.v0 \
  --output=type=oci,dest="$archive" --metadata-file="$meta" "$@" $ba $lb
""" + _RUN + r"""sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' "$meta" \
  | head -n 1 | tr -d '\n' > "$out/digest"
printf '%s' "$archive" > "$out/archive"
"""

assert "'" not in _DECODER  # the decoder is embedded in single quotes below
KANIKO = f"decoder='{_DECODER}'\n" + _KANIKO
BUILDKIT = f"decoder='{_DECODER}'\n" + _BUILDKIT
