#!/usr/bin/env bash
# Checks the deployment files without a Docker engine (none runs on the development
# machines or in CI), as part of the README's test command (tests/run-all.sh):
#
#  1. docker-compose.yml is valid for Compose (`docker-compose config -q`, Debian's package).
#  2. The image's build context is reproduced FROM THE DOCKERFILE ITSELF: the builder
#     stage's WORKDIR, COPY (with .dockerignore applied) and RUN lines are replayed in a
#     temporary folder, with every `cargo build …` in them run as `cargo check …` (no
#     --release) against the project's own target directory, so dependencies are reused
#     and a file the image needs but the Dockerfile does not copy (a source, template,
#     migration, static asset, build script or a target Cargo.toml declares) fails here.
#  3. Self-test: the same replay of a copy of the Dockerfile without its
#     `COPY templates templates` line must fail, and fail in the compiler on the missing
#     template, so a replay that silently passes everything cannot go unnoticed.
#
# What it does not check: the base images, the runtime stage (apt-get, the user), the
# release profile, and the image ever starting. tests/it/deploy.rs runs the binary with
# the compose environment and the Dockerfile's HEALTHCHECK.
#
#   bash tests/deploy-check.sh                     # all three
#   bash tests/deploy-check.sh --dockerfile FILE   # replay FILE only (no compose, no self-test)
#
# The builder's RUN lines run on this machine with a PATH holding only the harmless
# commands listed in ALLOWED below and a `cargo` stand-in; a RUN that needs anything
# else fails the check, saying which command (add it here only if it is safe on a host).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
ALLOWED="sh bash mkdir touch rm cp mv ln cat echo printf test [ true false dirname basename
  sed awk mawk gawk grep head tail tr cut sort uniq wc ls env"

say() { printf '\n==> %s\n' "$*"; }
die() { echo "deploy-check: $*" >&2; exit 2; }

# A fixed folder per checkout (not a new one per run): the copied crate keeps one path,
# so its artifacts in the shared target directory are replaced, not piled up.
WORK=${TMPDIR:-/tmp}/wordtally-deploy-check-$(printf '%s' "$ROOT" | md5sum | cut -c1-12)

# Prints the Dockerfile's instructions one per line, as Docker reads them: comment lines
# dropped (also inside continued lines), `\`+newline joined.
instructions() {
  grep -v '^[[:space:]]*#' "$1" | sed -e ':a' -e '/\\$/{N; s/\\\n//; ba' -e '}' |
    grep -v '^[[:space:]]*$'
}

# Copies context path $1 to $2 the way COPY does (a folder's contents into the
# destination folder), leaving out what .dockerignore excludes (anchored at the context
# root, `*` not crossing `/`, as Docker's patterns do; `!` and `**` are refused).
copy_in() {
  local src=$1 dest=$2 excludes=$WORK/excludes
  [ -e "$ROOT/$src" ] || die "COPY source '$src' does not exist in the build context"
  : >"$excludes"
  if [ -f "$ROOT/.dockerignore" ]; then
    while IFS= read -r pat || [ -n "$pat" ]; do
      pat=${pat%%[[:space:]]}
      case $pat in '' | '#'*) continue ;; '!'* | *'**'*) die ".dockerignore pattern '$pat' is not supported by this check" ;; esac
      printf '%s\n' "${pat#/}" >>"$excludes"
    done <"$ROOT/.dockerignore"
  fi
  if [ -d "$ROOT/$src" ]; then
    mkdir -p "$dest"
    (cd "$ROOT" && tar --anchored --no-wildcards-match-slash --exclude-from="$excludes" -cf - "$src") |
      (cd "$WORK/unpack" && tar -xf -)
    cp -a "$WORK/unpack/$src/." "$dest/"
    rm -rf "${WORK:?}/unpack/${src%%/*}"
  else
    if [ -d "$dest" ] || [ "${dest%/}" != "$dest" ]; then dest=${dest%/}/$(basename "$src"); fi
    mkdir -p "$(dirname "$dest")"
    cp -a "$ROOT/$src" "$dest"
  fi
}

# Replays the builder stage of Dockerfile $1 in $WORK/ctx. Exit status: cargo's (or the
# step's) when a step fails, 2 when the Dockerfile uses something this check cannot replay.
replay() {
  local dockerfile=$1 ctx=$WORK/ctx shim=$WORK/bin workdir stage=0 line instr args
  rm -rf "$WORK/ctx" "$WORK/unpack" "$shim"
  mkdir -p "$ctx" "$WORK/unpack" "$shim"
  for cmd in $ALLOWED; do
    local path
    path=$(PATH=/usr/local/bin:/usr/bin:/bin command -v "$cmd") || continue # e.g. no mawk here
    case $path in /*) ln -s "$path" "$shim/$cmd" ;; *) ;; esac # builtins like [ need no link
  done
  local real_cargo
  real_cargo=$(command -v cargo) || die "cargo not found"
  # The cargo stand-in: `cargo build [--release] ARGS` -> `cargo check ARGS`, nothing else.
  cat >"$shim/cargo" <<EOF
#!/bin/bash
set -eu
[ "\${1:-}" = build ] || { echo "deploy-check: no stand-in for 'cargo \$*' in a Dockerfile RUN" >&2; exit 2; }
shift
args=()
for a in "\$@"; do [ "\$a" = --release ] || args+=("\$a"); done
echo "deploy-check: (in \$PWD) cargo check \${args[*]}" >&2
PATH='$PATH' CARGO_TARGET_DIR='$TARGET_DIR' CARGO_INCREMENTAL=0 exec '$real_cargo' check "\${args[@]}"
EOF
  chmod +x "$shim/cargo"
  workdir=$ctx
  local -a envs=()
  while IFS= read -r line; do
    instr=${line%%[[:space:]]*}
    args=${line#"$instr"}
    args=${args#"${args%%[![:space:]]*}"}
    case ${instr^^} in
      FROM)
        stage=$((stage + 1))
        [ "$stage" -gt 1 ] && break # only the builder stage runs here
        ;;
      WORKDIR)
        case $args in /*) workdir=$ctx$args ;; *) workdir=$workdir/$args ;; esac
        mkdir -p "$workdir"
        ;;
      ENV) envs+=("$args") ;;
      ARG | LABEL) ;;
      COPY | ADD)
        [ "${instr^^}" = COPY ] || die "ADD is not replayed by this check; use COPY"
        local -a parts
        read -r -a parts <<<"$args"
        case ${parts[0]} in --from=*) continue ;; --chown=* | --chmod=*) parts=("${parts[@]:1}") ;; esac
        case ${parts[0]} in '['*) die "JSON-form COPY is not replayed by this check: $line" ;; esac
        local n=${#parts[@]} dest
        [ "$n" -ge 2 ] || die "COPY needs a source and a destination: $line"
        dest=${parts[n - 1]}
        case $dest in /*) dest=$ctx$dest ;; *) dest=$workdir/$dest ;; esac
        if [ "$n" -gt 2 ]; then mkdir -p "$dest"; dest=${dest%/}/; fi
        for src in "${parts[@]:0:n-1}"; do copy_in "$src" "$dest"; done
        ;;
      RUN)
        case $args in '['*) die "exec-form RUN is not replayed by this check: $line" ;; esac
        echo "deploy-check: RUN ${args:0:100}…" >&2
        (
          cd "$workdir"
          for e in "${envs[@]}"; do eval "export $e"; done
          PATH=$shim exec /bin/sh -c "$args"
        ) || return $?
        ;;
      *) die "instruction ${instr^^} in the builder stage is not replayed by this check" ;;
    esac
  done < <(instructions "$dockerfile")
  [ "$stage" -ge 1 ] || die "no FROM in $dockerfile"
}

if [ "${1:-}" = --dockerfile ]; then
  [ -f "${2:-}" ] || die "usage: $0 [--dockerfile FILE]"
  replay "$2"
  exit 0
fi

say "docker-compose.yml (docker-compose config)"
command -v docker-compose >/dev/null ||
  die "docker-compose is missing (Debian: apt-get install docker-compose; tests/run-all.sh installs it)"
docker-compose -f docker-compose.yml config -q
echo "docker-compose.yml is valid"

say "image build context replayed from the Dockerfile (cargo check against $TARGET_DIR)"
replay Dockerfile
echo "the Dockerfile's build context compiles"

say "self-test: the same replay without 'COPY templates templates' must fail"
mkdir -p "$WORK"
grep -v '^COPY templates templates$' Dockerfile >"$WORK/Dockerfile.broken"
cmp -s Dockerfile "$WORK/Dockerfile.broken" && die "self-test: no 'COPY templates templates' line to remove"
if bash "$0" --dockerfile "$WORK/Dockerfile.broken" >"$WORK/broken.log" 2>&1; then
  cat "$WORK/broken.log" >&2
  die "self-test: a Dockerfile that does not copy templates/ passed the replay"
fi
if ! grep -q 'template .* not found' "$WORK/broken.log"; then
  cat "$WORK/broken.log" >&2
  die "self-test: the replay failed, but not on the missing template"
fi
echo "a Dockerfile missing 'COPY templates templates' fails as it should:"
grep -m1 'template .* not found' "$WORK/broken.log"
rm -rf "${WORK:?}/ctx"
