cd /work/wt-soak
export CONSENTGATE_BOOTSTRAP=127.0.0.1:49192 CONSENTGATE_MEMDIAG=/tmp/soak-fix2-60/diag CONSENTGATE_MEMDIAG_EVERY=60 CONSENTGATE_MEMDIAG_RDKAFKA_MS=60000
exec .venv/bin/python bench/soak.py --minutes 60 --out /tmp/soak-fix2-60
