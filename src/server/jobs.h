// The job queue of `zimage serve`: bounded, one job at a time on the shared pipeline (a worker
// thread), progress from the pipeline's step callback, cancellation before start and between
// steps, finished jobs kept for a time and a count. Every generating route goes through it.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/request.h"
#include "zimage/pipeline.h"

namespace zimage::server {

enum class JobState { Queued, Running, Done, Failed, Cancelled };
const char* state_name(JobState s);

struct JobImage {
  std::vector<uint8_t> png;  // with the "parameters" infotext and "zimage" JSON chunks
  uint64_t seed = 0;
  std::string infotext;
};
struct JobResult {
  std::vector<JobImage> images;
  double seconds = 0;
};

// What a route sees of a job (a copy taken under the queue's lock).
struct JobView {
  std::string id;
  JobState state = JobState::Queued;
  std::string stage;
  int step = 0, num_steps = 0;
  int queue_position = 0;  // jobs ahead of it while queued
  std::string error;
  double eta_seconds = 0;
  std::shared_ptr<const JobResult> result;  // Done only
  bool finished() const { return state == JobState::Done || state == JobState::Failed || state == JobState::Cancelled; }
};

struct Job {
  std::string id;
  GenerateRequest request;
  std::atomic<bool> cancel_requested{false};
  // Guarded by the queue's mutex.
  JobState state = JobState::Queued;
  std::string stage, error;
  int step = 0, num_steps = 0;
  double step_seconds_sum = 0;
  std::shared_ptr<const JobResult> result;
  std::chrono::steady_clock::time_point created, finished_at;
};

// Runs one job: reports progress, polls `cancelled` between steps (then throws JobCancelled).
using ProgressSink = std::function<void(const Progress&)>;
using JobRunner =
    std::function<JobResult(const GenerateRequest&, const ProgressSink&, const std::function<bool()>& cancelled)>;
struct JobCancelled {};

struct QueueOptions {
  size_t capacity = 64;       // queued jobs (the running one not counted); more -> 429
  double keep_seconds = 600;  // finished jobs are dropped after this long ...
  size_t keep_count = 64;     // ... or when more than this many are finished
};

struct QueueStats {
  size_t queued = 0;
  bool running = false;
  uint64_t done = 0, failed = 0, cancelled = 0;
  std::vector<uint64_t> step_buckets;  // cumulative counts per kStepBuckets bound, then +Inf
  double step_seconds_sum = 0;
  uint64_t step_count = 0;
};
inline const std::vector<double> kStepBuckets = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

class JobQueue {
 public:
  JobQueue(JobRunner runner, QueueOptions options);
  ~JobQueue();  // shutdown(0)
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Queues a job. Full: RequestError(429, "", "[serve] the queue is full (N jobs waiting)...");
  // shutting down: RequestError(503, ...).
  std::shared_ptr<Job> submit(GenerateRequest request);
  std::shared_ptr<Job> find(const std::string& id);
  std::optional<JobView> view(const std::string& id);
  JobView view(const std::shared_ptr<Job>& job);
  // Cancels a queued job at once, a running one after its current step. False when unknown or finished.
  bool cancel(const std::string& id);
  // Cancels the running job (A1111's interrupt). Returns its id, or "" when none runs.
  std::string cancel_running();
  // Drops a finished job (DELETE on a finished job). False when unknown or not finished.
  bool remove(const std::string& id);
  // Waits until the job is finished or `timeout` passes; returns its view.
  JobView wait(const std::shared_ptr<Job>& job, std::chrono::milliseconds timeout);
  // The running job's view, or nullopt.
  std::optional<JobView> running();
  QueueStats stats();
  // Seconds a client should wait before retrying when the queue is full (mean job time x queue).
  int retry_after_seconds();
  // Stops taking jobs; lets queued and running jobs finish for up to `grace`, then cancels the
  // rest (the running one after its current step) and joins the worker.
  void shutdown(std::chrono::milliseconds grace);

 private:
  void worker();
  void prune_locked();
  void finish_locked(Job& job, JobState state);

  JobRunner runner_;
  QueueOptions opt_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  std::deque<std::string> finished_order_;
  std::shared_ptr<Job> running_;
  bool stopping_ = false, stopped_ = false;
  uint64_t done_ = 0, failed_ = 0, cancelled_ = 0, next_id_ = 0;
  std::vector<uint64_t> step_buckets_ = std::vector<uint64_t>(kStepBuckets.size() + 1, 0);
  double step_sum_ = 0, job_seconds_sum_ = 0;
  uint64_t step_count_ = 0, jobs_timed_ = 0;
  std::thread worker_;
};

}  // namespace zimage::server
