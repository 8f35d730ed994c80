"""consentgate's development stack: what tests, benchmarks and the demo run on, never shipped.

``broker`` (the local Kafka broker and schema registry, from Maven Central's jars, through the
one JVM launcher in ``jvm``), ``cluster`` (find or start a cluster), ``services`` (start the
product's services as processes), ``demo`` (the job-site case and its workload).
"""
