cd /work/wt-soak
export CONSENTGATE_BOOTSTRAP=127.0.0.1:49192 CONSENTGATE_MEMDIAG=/tmp/soak-fix-nogc/diag CONSENTGATE_MEMDIAG_EVERY=30 CONSENTGATE_MEMDIAG_RDKAFKA_MS=0
exec .venv/bin/python bench/soak.py --minutes 25 --out /tmp/soak-fix-nogc
