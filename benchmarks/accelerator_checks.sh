#!/usr/bin/env bash
# Checks that need an accelerator, in one go (each step has its own time limit and log):
#   1. the kernel tests with Pallas compiled for the device instead of interpreted (parity of the
#      Pallas / chunked paths with the reference, tile-skip and bf16 tests), ~2 min;
#   2. the fused-loss benchmark at N=4096, V in {100k, 1M}, float32 and bfloat16: reference,
#      chunked and Pallas (autotuned at its first call), time / memory / fraction of the peaks,
#      ~3-4 min;
#   3. HSTU training throughput (benchmarks/hstu_throughput.py), float32 and bf16, ~3 min;
#   4. only when ML100K_DIR is given: the seed spread of the ML-1M HSTU configuration on
#      MovieLens 100K (5 seeds), ~5.5 min.
# Usage: bash benchmarks/accelerator_checks.sh OUT_DIR [ML100K_DIR]
# The kernel tests run float32 matmuls at full precision (no TF32) so they compare with CPU
# tolerances; the benchmark runs at JAX's default precision (TF32 on the GPU, for every path).
set -u
out=${1:?OUT_DIR}; ml100k=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, flax, optax, orbax.checkpoint, chex; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'chex', chex.__version__); print(jax.devices())"
  python3 -c "import genrec_jax.train.pretrain; print('genrec_jax imports')"; } > "$out/env.txt" 2>&1

# 1. Kernel parity on the device (the table's tiles: autotuning is exercised by step 2).
GENREC_PALLAS_AUTOTUNE=0 JAX_DEFAULT_MATMUL_PRECISION=highest timeout 180 \
  python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_kernels_pallas_tuning.py \
  -k "not sharded" > "$out/kernel_tests.log" 2>&1
echo "kernel tests rc=$?" >> "$out/env.txt"

# 2. Fused loss benchmark (one process per variant; the Pallas worker autotunes then measures).
timeout 420 python3 benchmarks/fused_loss.py --pallas --rounds=1 --steps=10 --ns=4096 \
  --vs=100000,1000000 --chunks=8192 --dtypes=float32,bfloat16 --memory-budget-gib=100 \
  --out="$out/fused_loss.json" > "$out/fused_loss.log" 2>&1
echo "fused loss rc=$?" >> "$out/env.txt"

# 3. HSTU training throughput (examples/s, MFU) of the ml-100k and the large config, f32 and bf16.
timeout 240 python3 benchmarks/hstu_throughput.py --out="$out/hstu_throughput.json" \
  > "$out/hstu_throughput.log" 2>&1
echo "hstu throughput rc=$?" >> "$out/env.txt"
timeout 240 python3 benchmarks/hstu_throughput.py --precision=bf16 \
  --out="$out/hstu_throughput_bf16.json" > "$out/hstu_throughput_bf16.log" 2>&1
echo "hstu throughput bf16 rc=$?" >> "$out/env.txt"

# 4. Seed spread (optional).
if [ -n "$ml100k" ]; then
  bar=hr@10=0.1919,ndcg@10=0.1042,hr@50=0.4761,mrr=0.0943
  # One H200 with 16 cores: 4 runs at a time took 100 s, 6 took 143 s (10 at once ran past 200 s).
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 JAX_DEFAULT_MATMUL_PRECISION=highest timeout 330 \
    python3 benchmarks/pretrain_seeds.py --dataset=ml-100k --data_dir="$ml100k" --seeds=0,1,2,3,4 \
    --parallel=5 --bar=$bar --out="$out/seeds_ml100k.json" > "$out/seeds_ml100k.log" 2>&1
  echo "seeds rc=$?" >> "$out/env.txt"
fi

cat "$out/env.txt"; tail -n 4 "$out/kernel_tests.log"; tail -n 16 "$out/fused_loss.log"
tail -n 3 "$out/hstu_throughput.log" "$out/hstu_throughput_bf16.log"
if [ -n "$ml100k" ]; then tail -n 4 "$out/seeds_ml100k.log"; fi
