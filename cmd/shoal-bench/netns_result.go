package main

// The testbed's results, as printed and saved as JSON.

// Completion is one peer's download in one phase.
type Completion struct {
	Host     string  `json:"host"`
	Seconds  float64 `json:"seconds"` // from the common start to the file in place
	Verified bool    `json:"verified"`
	SHA256   string  `json:"sha256"`
	// shoal only, from the fetch's final progress report
	FetchReported float64           `json:"fetch_reported_seconds,omitempty"`
	Received      int64             `json:"received_bytes,omitempty"`
	Duplicates    int64             `json:"duplicate_chunks,omitempty"`
	FromSeeders   int64             `json:"from_seeders_bytes,omitempty"`
	FromPeers     int64             `json:"from_peers_bytes,omitempty"`
	BySource      map[string]int64  `json:"bytes_by_source,omitempty"`
	Dropped       map[string]string `json:"dropped_sources,omitempty"`
	Timeline      []TimelinePoint   `json:"timeline,omitempty"`
	Error         string            `json:"error,omitempty"` // the fetch failed
}

// fetchFailed: some fetches of a run failed; the others completed, and
// the run is recorded with its error.
type fetchFailed struct{ err error }

func (f *fetchFailed) Error() string { return f.err.Error() }
func (f *fetchFailed) Unwrap() error { return f.err }

// TimelinePoint samples a fetch's progress, about once a second.
type TimelinePoint struct {
	T         float64 `json:"t"`     // seconds since the common start
	Bytes     int64   `json:"bytes"` // verified bytes held
	FromPeers int64   `json:"from_peers"`
}

// PhaseRun is one phase (shoal or HTTP) of a run.
type PhaseRun struct {
	Completions   []Completion `json:"completions"` // one per peer
	FirstSeconds  float64      `json:"first_seconds"`
	MedianSeconds float64      `json:"median_seconds"`
	LastSeconds   float64      `json:"last_seconds"`
}

// MemSample is the fetching daemon's memory at one moment.
type MemSample struct {
	T       float64 `json:"t"`
	VmRSS   int64   `json:"vm_rss"`
	RssAnon int64   `json:"rss_anon"`
	RssFile int64   `json:"rss_file"`
}

// TestbedRun is one run of a scenario at one N.
type TestbedRun struct {
	N            int       `json:"n"`
	Run          int       `json:"run"`
	Order        string    `json:"order"`
	Error        string    `json:"error,omitempty"` // the run failed; not in the medians
	BoundSeconds float64   `json:"bound_seconds"`
	ShareSeconds float64   `json:"share_seconds"` // the first seeder's `shoal share` (untimed)
	ReadySeconds float64   `json:"ready_seconds"` // from the share until every peer sees the seeders
	Shoal        *PhaseRun `json:"shoal"`
	HTTP         *PhaseRun `json:"http,omitempty"`
	// shoal's last completion / bound, median completion / bound, HTTP's
	// last / bound, HTTP's last / shoal's last.
	LastOverBound   float64 `json:"last_over_bound,omitempty"`
	MedianOverBound float64 `json:"median_over_bound,omitempty"`
	HTTPOverBound   float64 `json:"http_over_bound,omitempty"`
	SpeedUp         float64 `json:"speedup_over_http,omitempty"`
	// ksource and memory: the one fetcher's throughput (bit/s), and over
	// the sum of the seeders' upload caps.
	ThroughputBps float64 `json:"throughput_bps,omitempty"`
	CapRatio      float64 `json:"throughput_over_caps,omitempty"`
	// memory: the fetching daemon's peak RSS (VmHWM) before the fetch and
	// at its end, and its memory over time.
	IdleHWM    int64       `json:"idle_vm_hwm_bytes,omitempty"`
	PeakHWM    int64       `json:"peak_vm_hwm_bytes,omitempty"`
	MemSamples []MemSample `json:"mem_samples,omitempty"`
}

// TestbedMedian sums up the runs at one N: medians, and for the ratios
// the median of the per-run ratios with their range.
type TestbedMedian struct {
	N               int        `json:"n"`
	BoundSeconds    float64    `json:"bound_seconds"`
	ShoalLast       float64    `json:"shoal_last_seconds"`
	ShoalMedian     float64    `json:"shoal_median_seconds"`
	HTTPLast        float64    `json:"http_last_seconds,omitempty"`
	LastOverBound   float64    `json:"last_over_bound,omitempty"`
	LastOverRange   [2]float64 `json:"last_over_bound_range"`
	MedianOverBound float64    `json:"median_over_bound,omitempty"`
	SpeedUp         float64    `json:"speedup_over_http,omitempty"`
	SpeedUpRange    [2]float64 `json:"speedup_range"`
	FromPeersShare  float64    `json:"from_peers_share"` // of all bytes the peers received, the share from other peers
	ThroughputBps   float64    `json:"throughput_bps,omitempty"`
	CapRatio        float64    `json:"throughput_over_caps,omitempty"`
	CapRatioRange   [2]float64 `json:"throughput_over_caps_range"`
	PeakHWM         int64      `json:"peak_vm_hwm_bytes,omitempty"`
	FailedRuns      int        `json:"failed_runs,omitempty"` // runs with failed fetches, not in the figures above
}

// TestbedResult is a testbed scenario's outcome.
type TestbedResult struct {
	Header
	Benchmark  string          `json:"benchmark"`
	Size       int64           `json:"size_bytes"`
	Seeders    int             `json:"seeders"`
	SeedUp     string          `json:"seed_upload"`
	SeedDown   string          `json:"seed_download"`
	PeerUp     string          `json:"peer_upload"`
	PeerDown   string          `json:"peer_download"`
	Shaping    string          `json:"shaping"`
	Subnet     string          `json:"subnet"`
	FetchVia   string          `json:"fetch_via"`
	Warmup     int             `json:"warmup_runs"`
	SourceHash string          `json:"source_sha256"`
	Runs       []TestbedRun    `json:"runs"`
	Medians    []TestbedMedian `json:"medians"`
}

// summarise takes the first, median and last of the completed fetches.
func summarise(comps []Completion) *PhaseRun {
	pr := &PhaseRun{Completions: comps}
	var ts []float64
	for _, c := range comps {
		if c.Error == "" { // of a run with failed fetches: the completed ones
			ts = append(ts, c.Seconds)
		}
	}
	pr.FirstSeconds, pr.LastSeconds = spread(ts)
	pr.MedianSeconds = median(ts)
	return pr
}

// medianOf sums up the runs at n.
func medianOf(runs []TestbedRun, n int) TestbedMedian {
	m := TestbedMedian{N: n}
	var bound, last, med, httpLast, lob, mob, sp, fp, tp, cr, hwm []float64
	for _, r := range runs {
		if r.N == n && r.Error != "" {
			m.FailedRuns++
			m.BoundSeconds = r.BoundSeconds
		}
		if r.N != n || r.Error != "" {
			continue
		}
		bound = append(bound, r.BoundSeconds)
		last, med = append(last, r.Shoal.LastSeconds), append(med, r.Shoal.MedianSeconds)
		if r.HTTP != nil {
			httpLast, sp = append(httpLast, r.HTTP.LastSeconds), append(sp, r.SpeedUp)
		}
		if r.BoundSeconds > 0 {
			lob, mob = append(lob, r.LastOverBound), append(mob, r.MedianOverBound)
		}
		var seeds, others int64
		for _, c := range r.Shoal.Completions {
			seeds, others = seeds+c.FromSeeders, others+c.FromPeers
		}
		if seeds+others > 0 {
			fp = append(fp, float64(others)/float64(seeds+others))
		}
		if r.ThroughputBps > 0 {
			tp = append(tp, r.ThroughputBps)
		}
		if r.CapRatio > 0 {
			cr = append(cr, r.CapRatio)
		}
		if r.PeakHWM > 0 {
			hwm = append(hwm, float64(r.PeakHWM))
		}
	}
	if len(bound) == 0 {
		return m // every run failed
	}
	m.BoundSeconds, m.ShoalLast, m.ShoalMedian, m.HTTPLast = median(bound), median(last), median(med), median(httpLast)
	m.LastOverBound, m.MedianOverBound, m.SpeedUp = median(lob), median(mob), median(sp)
	m.LastOverRange[0], m.LastOverRange[1] = spread(lob)
	m.SpeedUpRange[0], m.SpeedUpRange[1] = spread(sp)
	m.FromPeersShare = median(fp)
	m.ThroughputBps, m.CapRatio = median(tp), median(cr)
	m.CapRatioRange[0], m.CapRatioRange[1] = spread(cr)
	m.PeakHWM = int64(median(hwm))
	return m
}
