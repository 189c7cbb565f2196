#!/usr/bin/env bash
# Checks that need an accelerator, in one go (each step has its own time limit and log):
#   1. the kernel tests with Pallas compiled for the device instead of interpreted;
#   2. the fused-loss benchmark with the Pallas kernel beside the reference and chunked paths;
#   3. the seed spread of the ML-1M HSTU configuration on MovieLens 100K (5 seeds).
# Usage: bash benchmarks/accelerator_checks.sh OUT_DIR ML100K_DIR
# float32 matmuls run at full precision (no TF32) where results are compared with CPU figures.
set -u
out=${1:?OUT_DIR}; ml100k=${2:?ML100K_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, flax, optax, orbax.checkpoint, chex; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'chex', chex.__version__); print(jax.devices())"
  python3 -c "import genrec_jax.train.pretrain; print('genrec_jax imports')"; } > "$out/env.txt" 2>&1
bar=hr@10=0.1919,ndcg@10=0.1042,hr@50=0.4761,mrr=0.0943
# One H200 with 16 cores: 4 runs at a time took 100 s, 6 took 143 s (10 at once ran past 200 s).
XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 JAX_DEFAULT_MATMUL_PRECISION=highest timeout 330 \
  python3 benchmarks/pretrain_seeds.py --dataset=ml-100k --data_dir="$ml100k" --seeds=0,1,2,3,4 \
  --parallel=5 --bar=$bar --out="$out/seeds_ml100k.json" > "$out/seeds_ml100k.log" 2>&1
echo "seeds rc=$?" >> "$out/env.txt"
JAX_DEFAULT_MATMUL_PRECISION=highest timeout 120 python3 -m pytest -q -p no:cacheprovider \
  tests/test_kernels.py -k "not sharded" > "$out/kernel_tests.log" 2>&1
echo "kernel tests rc=$?" >> "$out/env.txt"
timeout 150 python3 benchmarks/fused_loss.py --pallas --rounds=1 --steps=10 --ns=4096 \
  --memory-budget-gib=100 --out="$out/fused_loss.json" > "$out/fused_loss.log" 2>&1
echo "fused loss rc=$?" >> "$out/env.txt"
cat "$out/env.txt"; tail -n 4 "$out/seeds_ml100k.log" "$out/kernel_tests.log"; tail -n 12 "$out/fused_loss.log"
