"""`cardioquant batch`: analyses on whole cohorts, on a Dask cluster, resumable, one table at the end.

studies.py  what a cohort is: every DICOM series and image file of a folder tree, or the rows of a CSV manifest
engine.py   the work of one study on a Dask worker: a long-lived engine process per worker (networks loaded
            once), a time limit, a crash of compiled code contained, results swapped in as a whole folder
ledger.py   the SQLite ledger in OUTROOT: status, fingerprint, settings, versions, timings and errors per study
runner.py   the command: discovery, skip what is done, submit, retry, progress, cohort.csv / cohort.parquet
"""
