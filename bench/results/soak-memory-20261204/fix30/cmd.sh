cd /work/wt-soak
export CONSENTGATE_BOOTSTRAP=127.0.0.1:49192 CONSENTGATE_MEMDIAG=/tmp/soak-fix30/diag CONSENTGATE_MEMDIAG_EVERY=60 CONSENTGATE_MEMDIAG_RDKAFKA_MS=30000
exec .venv/bin/python bench/soak.py --minutes 30 --out /tmp/soak-fix30
