"""klepto's benchmarks: each workload compares klepto with its peers in one run."""
