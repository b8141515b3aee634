"""The data-quality gate: Spark measures of the catalog and the interaction log, Great Expectations suites,
thresholded checks with a pass / warn / fail verdict, and a one-page report (``unisem.quality.gate.run_gate``)."""
