cd /work/wt-soak
export MALLOC_ARENA_MAX=2
export CONSENTGATE_BOOTSTRAP=127.0.0.1:49192 CONSENTGATE_MEMDIAG=/tmp/soak-arena2/diag CONSENTGATE_MEMDIAG_EVERY=30 CONSENTGATE_MEMDIAG_RDKAFKA_MS=0
exec .venv/bin/python bench/soak.py --minutes 15 --out /tmp/soak-arena2
