#include "server/jobs.h"

#include <cmath>
#include <cstdio>
#include <random>

namespace zimage::server {

const char* state_name(JobState s) {
  switch (s) {
    case JobState::Queued:
      return "queued";
    case JobState::Running:
      return "running";
    case JobState::Done:
      return "succeeded";
    case JobState::Failed:
      return "failed";
    case JobState::Cancelled:
      return "cancelled";
  }
  return "unknown";
}

JobQueue::JobQueue(JobRunner runner, QueueOptions options) : runner_(std::move(runner)), opt_(options) {
  worker_ = std::thread([this] { worker(); });
}

JobQueue::~JobQueue() { shutdown(std::chrono::milliseconds(0)); }

std::shared_ptr<Job> JobQueue::submit(GenerateRequest request) {
  std::unique_lock lk(mu_);
  if (stopping_) throw RequestError(503, "", "[serve] the server is shutting down and takes no new jobs");
  if (queue_.size() >= opt_.capacity)
    throw RequestError(429, "",
                       "[serve] the queue is full (" + std::to_string(queue_.size()) + " jobs waiting, --queue-size " +
                           std::to_string(opt_.capacity) + "); retry later");
  prune_locked();
  auto job = std::make_shared<Job>();
  // Unguessable ids: results are only reachable by whoever submitted the job (and holds the key).
  static thread_local std::mt19937_64 rng(std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32));
  char buf[40];
  std::snprintf(buf, sizeof buf, "%06llx%016llx", (unsigned long long)(++next_id_ & 0xffffff),
                (unsigned long long)rng());
  job->id = buf;
  job->request = std::move(request);
  job->created = std::chrono::steady_clock::now();
  job->num_steps = job->request.steps;
  jobs_[job->id] = job;
  queue_.push_back(job);
  work_cv_.notify_one();
  return job;
}

std::shared_ptr<Job> JobQueue::find(const std::string& id) {
  std::lock_guard lk(mu_);
  prune_locked();
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

JobView JobQueue::view(const std::shared_ptr<Job>& j) {
  std::lock_guard lk(mu_);
  JobView v;
  v.id = j->id;
  v.state = j->state;
  v.stage = j->stage;
  v.step = j->step;
  v.num_steps = j->num_steps;
  v.error = j->error;
  v.result = j->result;
  if (j->state == JobState::Queued)
    for (auto& q : queue_) {
      if (q == j) break;
      ++v.queue_position;
    }
  if (j->state == JobState::Running && j->step > 0)
    v.eta_seconds = j->step_seconds_sum / j->step * (j->num_steps - j->step);
  return v;
}

std::optional<JobView> JobQueue::view(const std::string& id) {
  auto j = find(id);
  if (!j) return std::nullopt;
  return view(j);
}

bool JobQueue::cancel(const std::string& id) {
  std::lock_guard lk(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return false;
  Job& j = *it->second;
  if (j.state == JobState::Queued) {
    for (auto q = queue_.begin(); q != queue_.end(); ++q)
      if (q->get() == &j) {
        queue_.erase(q);
        break;
      }
    finish_locked(j, JobState::Cancelled);
    return true;
  }
  if (j.state == JobState::Running) {
    j.cancel_requested = true;
    return true;
  }
  return false;
}

std::string JobQueue::cancel_running() {
  std::lock_guard lk(mu_);
  if (!running_) return "";
  running_->cancel_requested = true;
  return running_->id;
}

bool JobQueue::remove(const std::string& id) {
  std::lock_guard lk(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return false;
  JobState s = it->second->state;
  if (s == JobState::Queued || s == JobState::Running) return false;
  jobs_.erase(it);
  return true;
}

JobView JobQueue::wait(const std::shared_ptr<Job>& job, std::chrono::milliseconds timeout) {
  {
    std::unique_lock lk(mu_);
    done_cv_.wait_for(lk, timeout, [&] {
      return job->state == JobState::Done || job->state == JobState::Failed || job->state == JobState::Cancelled;
    });
  }
  return view(job);
}

std::optional<JobView> JobQueue::running() {
  std::shared_ptr<Job> r;
  {
    std::lock_guard lk(mu_);
    r = running_;
  }
  if (!r) return std::nullopt;
  return view(r);
}

QueueStats JobQueue::stats() {
  std::lock_guard lk(mu_);
  QueueStats s;
  s.queued = queue_.size();
  s.running = running_ != nullptr;
  s.done = done_;
  s.failed = failed_;
  s.cancelled = cancelled_;
  s.step_buckets = step_buckets_;
  s.step_seconds_sum = step_sum_;
  s.step_count = step_count_;
  return s;
}

int JobQueue::retry_after_seconds() {
  std::lock_guard lk(mu_);
  double mean = jobs_timed_ ? job_seconds_sum_ / double(jobs_timed_) : 1.0;
  return std::max(1, int(std::ceil(mean * double(queue_.size() + 1) / 2)));
}

void JobQueue::shutdown(std::chrono::milliseconds grace) {
  std::unique_lock lk(mu_);
  if (stopped_) return;
  stopping_ = true;
  done_cv_.wait_for(lk, grace, [&] { return queue_.empty() && !running_; });
  for (auto& q : queue_) finish_locked(*q, JobState::Cancelled);
  queue_.clear();
  if (running_) running_->cancel_requested = true;
  stopped_ = true;
  work_cv_.notify_all();
  lk.unlock();
  if (worker_.joinable()) worker_.join();
}

void JobQueue::finish_locked(Job& j, JobState state) {
  j.state = state;
  j.finished_at = std::chrono::steady_clock::now();
  if (state == JobState::Done) ++done_;
  if (state == JobState::Failed) ++failed_;
  if (state == JobState::Cancelled) ++cancelled_;
  finished_order_.push_back(j.id);
  done_cv_.notify_all();
}

void JobQueue::prune_locked() {
  const auto now = std::chrono::steady_clock::now();
  size_t finished = finished_order_.size();
  while (!finished_order_.empty()) {
    auto it = jobs_.find(finished_order_.front());
    bool drop = it == jobs_.end();
    if (!drop) {
      double age = std::chrono::duration<double>(now - it->second->finished_at).count();
      drop = age > opt_.keep_seconds || finished > opt_.keep_count;
      if (drop) jobs_.erase(it);
    }
    if (!drop) break;
    finished_order_.pop_front();
    --finished;
  }
}

void JobQueue::worker() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lk(mu_);
      work_cv_.wait(lk, [&] { return stopped_ || !queue_.empty(); });
      if (stopped_) return;
      job = queue_.front();
      queue_.pop_front();
      job->state = JobState::Running;
      running_ = job;
    }
    auto t0 = std::chrono::steady_clock::now();
    ProgressSink progress = [&](const Progress& p) {
      std::lock_guard lk(mu_);
      job->stage = p.stage;
      if (p.stage == "denoise") {
        job->step = p.step;
        job->num_steps = p.num_steps;
        job->step_seconds_sum += p.seconds;
        step_sum_ += p.seconds;
        ++step_count_;
        for (size_t b = 0; b < kStepBuckets.size(); ++b)
          if (p.seconds <= kStepBuckets[b]) ++step_buckets_[b];
        ++step_buckets_.back();
      }
    };
    auto cancelled = [&] { return job->cancel_requested.load(); };
    JobState end = JobState::Done;
    std::string error;
    std::shared_ptr<const JobResult> result;
    try {
      if (cancelled()) throw JobCancelled{};
      result = std::make_shared<JobResult>(runner_(job->request, progress, cancelled));
      if (cancelled()) end = JobState::Cancelled, result.reset();
    } catch (const JobCancelled&) {
      end = JobState::Cancelled;
    } catch (const std::bad_alloc&) {
      end = JobState::Failed;
      error = "[serve] out of memory";
    } catch (const std::exception& e) {
      end = JobState::Failed;
      error = e.what();
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::lock_guard lk(mu_);
    job->result = result;
    job->error = error;
    if (end == JobState::Done) {
      job_seconds_sum_ += secs;
      ++jobs_timed_;
    }
    running_.reset();
    finish_locked(*job, end);
    prune_locked();
  }
}

}  // namespace zimage::server
