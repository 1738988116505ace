// The job queue of `zimage serve` with a fake runner (no model): bound, cancellation before
// start and between steps, progress, retention, failures, shutdown.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "server/jobs.h"

using namespace zimage;
using namespace zimage::server;
using namespace std::chrono_literals;

namespace {

GenerateRequest req(int steps = 3) {
  GenerateRequest r;
  r.prompt = "x";
  r.steps = steps;
  r.width = r.height = 16;
  r.seeds = {1};
  return r;
}

// A runner that takes `steps` steps of `step_ms`, reporting progress and honouring cancellation
// between steps; it blocks on `gate` until it is opened.
struct FakeRunner {
  std::atomic<bool> gate{true};
  std::atomic<int> runs{0};
  int step_ms = 5;
  JobRunner fn() {
    return [this](const GenerateRequest& r, const ProgressSink& progress, const std::function<bool()>& cancelled) {
      ++runs;
      while (!gate) std::this_thread::sleep_for(1ms);
      if (r.prompt == "fail") throw Error("[pipeline] boom");
      for (int i = 1; i <= r.steps; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
        Progress p;
        p.stage = "denoise";
        p.step = i;
        p.num_steps = r.steps;
        p.seconds = step_ms / 1000.0;
        progress(p);
        if (cancelled()) throw JobCancelled{};
      }
      JobResult res;
      res.images.resize(size_t(r.num_images));
      return res;
    };
  }
};

JobView wait_done(JobQueue& q, const std::shared_ptr<Job>& j) {
  for (int i = 0; i < 2000; ++i) {
    JobView v = q.wait(j, 10ms);
    if (v.finished()) return v;
  }
  ADD_FAILURE() << "job " << j->id << " did not finish";
  return q.view(j);
}

}  // namespace

TEST(JobQueue, RunsJobsInOrderWithProgress) {
  FakeRunner f;
  JobQueue q(f.fn(), {});
  auto a = q.submit(req(3));
  auto b = q.submit(req(2));
  EXPECT_NE(a->id, b->id);
  JobView vb = wait_done(q, b);
  JobView va = q.view(a);
  EXPECT_EQ(va.state, JobState::Done);
  EXPECT_EQ(va.step, 3);
  EXPECT_EQ(va.num_steps, 3);
  EXPECT_EQ(vb.state, JobState::Done);
  ASSERT_TRUE(vb.result);
  EXPECT_EQ(vb.result->images.size(), 1u);
  QueueStats s = q.stats();
  EXPECT_EQ(s.done, 2u);
  EXPECT_EQ(s.step_count, 5u);
  EXPECT_EQ(s.step_buckets.back(), 5u);
}

TEST(JobQueue, FullQueueIs429) {
  FakeRunner f;
  f.gate = false;  // the first job blocks the worker
  JobQueue q(f.fn(), {2, 600, 64});
  auto running = q.submit(req());
  while (!q.running()) std::this_thread::sleep_for(1ms);
  q.submit(req());
  q.submit(req());
  try {
    q.submit(req());
    FAIL() << "a third waiting job was accepted";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 429);
    EXPECT_NE(std::string(e.what()).find("--queue-size 2"), std::string::npos) << e.what();
  }
  EXPECT_GE(q.retry_after_seconds(), 1);
  EXPECT_EQ(q.stats().queued, 2u);
  f.gate = true;
  wait_done(q, running);
}

TEST(JobQueue, CancelBeforeStartNeverRuns) {
  FakeRunner f;
  f.gate = false;
  JobQueue q(f.fn(), {});
  auto first = q.submit(req());
  while (!q.running()) std::this_thread::sleep_for(1ms);
  auto second = q.submit(req());
  EXPECT_EQ(q.view(second).queue_position, 0);
  EXPECT_TRUE(q.cancel(second->id));
  EXPECT_EQ(q.view(second).state, JobState::Cancelled);
  f.gate = true;
  wait_done(q, first);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(f.runs, 1);                // the cancelled job never reached the runner
  EXPECT_FALSE(q.cancel(second->id));  // finished: nothing to cancel
  EXPECT_EQ(q.stats().cancelled, 1u);
}

TEST(JobQueue, CancelRunningStopsBetweenSteps) {
  FakeRunner f;
  f.step_ms = 20;
  JobQueue q(f.fn(), {});
  auto j = q.submit(req(1000));
  while (q.view(j).step < 2) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(q.cancel_running(), j->id);
  JobView v = wait_done(q, j);
  EXPECT_EQ(v.state, JobState::Cancelled);
  EXPECT_LT(v.step, 10);
  EXPECT_FALSE(v.result);
  EXPECT_EQ(q.cancel_running(), "");
}

TEST(JobQueue, FailureKeepsTheMessage) {
  FakeRunner f;
  JobQueue q(f.fn(), {});
  GenerateRequest r = req();
  r.prompt = "fail";
  JobView v = wait_done(q, q.submit(r));
  EXPECT_EQ(v.state, JobState::Failed);
  EXPECT_EQ(v.error, "[pipeline] boom");
  EXPECT_EQ(q.stats().failed, 1u);
}

TEST(JobQueue, ResultsAreDroppedByCountAndTime) {
  FakeRunner f;
  JobQueue q(f.fn(), {64, 600, 2});
  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(q.submit(req(1)));
  for (auto& j : jobs) wait_done(q, j);
  EXPECT_EQ(q.find(jobs[0]->id), nullptr);  // three finished, two kept
  EXPECT_NE(q.find(jobs[1]->id), nullptr);
  EXPECT_NE(q.find(jobs[2]->id), nullptr);
  EXPECT_TRUE(q.remove(jobs[2]->id));
  EXPECT_EQ(q.find(jobs[2]->id), nullptr);

  JobQueue t(f.fn(), {64, 0.05, 64});
  auto j = t.submit(req(1));
  wait_done(t, j);
  EXPECT_NE(t.find(j->id), nullptr);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(t.find(j->id), nullptr);
}

TEST(JobQueue, ShutdownCancelsWhatIsLeftAndRefusesNewJobs) {
  FakeRunner f;
  f.step_ms = 20;
  auto q = std::make_unique<JobQueue>(f.fn(), QueueOptions{});
  auto running = q->submit(req(1000));
  auto waiting = q->submit(req(1));
  while (!q->running()) std::this_thread::sleep_for(1ms);
  q->shutdown(50ms);
  EXPECT_EQ(q->view(running).state, JobState::Cancelled);
  EXPECT_EQ(q->view(waiting).state, JobState::Cancelled);
  try {
    q->submit(req());
    FAIL();
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 503);
  }
}

TEST(JobQueue, GraceLetsJobsFinish) {
  FakeRunner f;
  JobQueue q(f.fn(), {});
  auto a = q.submit(req(3));
  auto b = q.submit(req(3));
  q.shutdown(5s);
  EXPECT_EQ(q.view(a).state, JobState::Done);
  EXPECT_EQ(q.view(b).state, JobState::Done);
}
