//! Analytics: how Vigil's learned baselines and forecasts are judged. [`nab`] scores anomaly
//! detectors the way the Numenta Anomaly Benchmark does.

pub mod nab;
