#!/usr/bin/env bash
# Fuzzes the message decoder (TickerMessage::decode) with cargo-fuzz / libFuzzer for a bounded time
# and fails if the fuzzer finds an input that crashes it or breaks one of the contracts that
# fuzz/fuzz_targets/decode.rs asserts.
#
#   scripts/fuzz.sh                  # 60 seconds
#   FUZZ_SECS=600 scripts/fuzz.sh    # longer
#
# Installs what a fresh machine lacks: cargo-fuzz, and a nightly toolchain (libFuzzer's coverage
# instrumentation and the address sanitizer need nightly; the workspace itself stays on stable).
# The committed seeds in fuzz/corpus/decode are only read; what the fuzzer learns goes to
# fuzz/target/corpus/decode (kept between runs, ignored by git), crashing inputs to
# fuzz/artifacts/decode/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECS:-60}"
target=decode
seeds="fuzz/corpus/$target"
work_corpus="fuzz/target/corpus/$target"
artifacts="fuzz/artifacts/$target"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "== installing a nightly toolchain (for cargo-fuzz only)"
    rustup toolchain install nightly --profile minimal
fi

mkdir -p "$work_corpus" "$artifacts"
echo "== cargo +nightly fuzz run $target for ${secs}s"
# -max_len: a little above MAX_MESSAGE_BYTES (16 KiB), so the size limit itself is exercised.
# -timeout: one decode takes microseconds; 10 s means a hang. -rss_limit_mb: a leak or a blow-up.
status=0
cargo +nightly fuzz run "$target" "$work_corpus" "$seeds" -- \
    -max_total_time="$secs" \
    -max_len=16448 \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -dict=fuzz/decode.dict \
    -print_final_stats=1 \
    -artifact_prefix="$artifacts/" ||
    status=$?

if ((status != 0)); then
    echo "fuzz: FAILED (exit $status); the failing input is in $artifacts/." >&2
    echo "Reproduce: cargo +nightly fuzz run $target $artifacts/<file>" >&2
    exit 1
fi
echo "fuzz: $target ran ${secs}s without a crash"
