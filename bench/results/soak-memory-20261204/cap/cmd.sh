cd /work/wt-soak
export PYTHONPATH=/tmp/soak-cap/services CONSENTGATE_ROUTER_LOOP__TIMELINE_MEMORY=2300
export CONSENTGATE_BOOTSTRAP=127.0.0.1:49192 CONSENTGATE_MEMDIAG=/tmp/soak-cap/diag CONSENTGATE_MEMDIAG_EVERY=30 CONSENTGATE_MEMDIAG_RDKAFKA_MS=0
exec .venv/bin/python bench/soak.py --minutes 20 --out /tmp/soak-cap
