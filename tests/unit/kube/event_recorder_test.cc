#include "capstan/kube/event_recorder.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "capstan/common/metrics.h"
#include "capstan/kube/micro_time.h"
#include "capstan/kube/resource.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "unit/kube/in_memory_api_server.h"

namespace capstan::kube {
namespace {

using absl::Milliseconds;
using absl::Minutes;
using testing::InMemoryApiServer;

constexpr absl::Duration kTimeout = absl::Seconds(10);

bool Eventually(const std::function<bool()>& done, absl::Duration timeout = kTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(Milliseconds(1));
  }
  return true;
}

Object Pod(const std::string& name, const std::string& ns = "shop") {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", name},
            {"namespace", ns},
            {"uid", "uid-" + ns + "-" + name},
            {"resourceVersion", "42"}}},
          {"spec", {{"containers", Object::array()}}}};
}

double EventsMetric(const std::string& result) {
  return Metrics::Get().events->Add({{"result", result}}).Value();
}

// Metric deltas since construction.
class MetricDeltas {
 public:
  double operator()(const std::string& result) const {
    return EventsMetric(result) - start_.at(result);
  }

 private:
  std::map<std::string, double> start_ = {{"emitted", EventsMetric("emitted")},
                                          {"series", EventsMetric("series")},
                                          {"dropped", EventsMetric("dropped")},
                                          {"failed", EventsMetric("failed")}};
};

TEST(EventRecorderPureTest, TruncateUtf8) {
  struct Case {
    std::string name;
    std::string in;
    size_t max;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"short ascii", "hello", 10, "hello"},
      {"exact", "hello", 5, "hello"},
      {"cut ascii", "hello", 3, "hel"},
      {"empty", "", 3, ""},
      {"two-byte char fits", "a\xC3\xA9", 3, "a\xC3\xA9"},
      {"two-byte char straddles the limit", "ab\xC3\xA9", 3, "ab"},
      {"three-byte euro straddles", "a\xE2\x82\xAC", 3, "a"},
      {"four-byte emoji fits", "\xF0\x9F\x9A\x80!", 4, "\xF0\x9F\x9A\x80"},
      {"invalid byte",
       "a\xFF"
       "b",
       10, "a?b"},
      {"truncated sequence at end", "a\xE2\x82", 10, "a??"},
      {"overlong encoding", "\xC0\x80", 10, "??"},
      {"surrogate", "\xED\xA0\x80", 10, "???"},
      {"above U+10FFFF", "\xF4\x90\x80\x80", 10, "????"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(TruncateUtf8(c.in, c.max), c.want);
  }
}

class EventRecorderTest : public ::testing::Test {
 protected:
  EventRecorderOptions Options() {
    EventRecorderOptions o;
    o.reporting_instance = "capstan-0_abc";
    o.retry_backoff = Milliseconds(1);
    o.flush_timeout = kTimeout;
    return o;
  }

  std::vector<Object> Events(const std::string& ns = "shop") const {
    return server_.List(CollectionPath(resources::Events(), ns) + "/");
  }

  InMemoryApiServer server_;
  std::unique_ptr<Client> client_ = server_.NewClient();
  FakeClock clock_;
  MetricDeltas metrics_;
};

TEST_F(EventRecorderTest, WritesAnEventsV1Event) {
  EventRecorder recorder(*client_, Options(), clock_);
  recorder.Record(Pod("web-0"), kEventTypeWarning, "ProgressDeadlineExceeded", "Rollback",
                  "revision 3 did not become available in 600s");
  ASSERT_TRUE(recorder.Flush(kTimeout));

  std::vector<Object> events = Events();
  ASSERT_EQ(events.size(), 1u);
  const Object& e = events[0];
  EXPECT_EQ(e["apiVersion"], "events.k8s.io/v1");
  EXPECT_EQ(e["kind"], "Event");
  EXPECT_THAT(e["metadata"]["name"].get<std::string>(),
              ::testing::MatchesRegex("web-0\\.[0-9a-f]{16}"));
  EXPECT_EQ(e["metadata"]["namespace"], "shop");
  EXPECT_EQ(e["eventTime"], FormatMicroTime(clock_.Now()));
  EXPECT_EQ(e["reportingController"], "capstan.dev/capstan");
  EXPECT_EQ(e["reportingInstance"], "capstan-0_abc");
  EXPECT_EQ(e["type"], "Warning");
  EXPECT_EQ(e["reason"], "ProgressDeadlineExceeded");
  EXPECT_EQ(e["action"], "Rollback");
  EXPECT_EQ(e["note"], "revision 3 did not become available in 600s");
  EXPECT_EQ(e["regarding"], Object({{"apiVersion", "v1"},
                                    {"kind", "Pod"},
                                    {"name", "web-0"},
                                    {"namespace", "shop"},
                                    {"uid", "uid-shop-web-0"},
                                    {"resourceVersion", "42"}}));
  EXPECT_FALSE(e.contains("series"));
  EXPECT_EQ(metrics_("emitted"), 1);
  EXPECT_EQ(metrics_("dropped"), 0);
}

TEST_F(EventRecorderTest, RepeatsWithinTheWindowBecomeASeries) {
  EventRecorder recorder(*client_, Options(), clock_);
  const absl::Time t0 = clock_.Now();
  for (int i = 0; i < 3; ++i) {
    if (i > 0) clock_.Advance(Minutes(5));  // each within 6 min of the last
    recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
    ASSERT_TRUE(recorder.Flush(kTimeout));
  }
  std::vector<Object> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["eventTime"], FormatMicroTime(t0));
  EXPECT_EQ(events[0]["series"]["count"], 3);
  EXPECT_EQ(events[0]["series"]["lastObservedTime"], FormatMicroTime(clock_.Now()));
  EXPECT_EQ(server_.Requests("POST"), 1);
  EXPECT_EQ(server_.Requests("PATCH"), 2);
  EXPECT_EQ(metrics_("emitted"), 1);
  EXPECT_EQ(metrics_("series"), 2);
}

TEST_F(EventRecorderTest, QueuedSeriesBumpsShareOnePatch) {
  EventRecorder recorder(*client_, Options(), clock_);
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  ASSERT_TRUE(recorder.Flush(kTimeout));
  server_.CloseGate();
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(1));
    recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  }
  server_.OpenGate();
  ASSERT_TRUE(recorder.Flush(kTimeout));
  std::vector<Object> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["series"]["count"], 6);
  EXPECT_EQ(events[0]["series"]["lastObservedTime"], FormatMicroTime(clock_.Now()));
  // The first bump's patch may have been taken before the rest arrived.
  EXPECT_LE(server_.Requests("PATCH"), 2);
  EXPECT_EQ(metrics_("series"), 5);
}

TEST_F(EventRecorderTest, AnyDifferenceStartsANewEvent) {
  EventRecorder recorder(*client_, Options(), clock_);
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 4");
  recorder.Record(Pod("web-0"), kEventTypeWarning, "Scaled", "Scale", "scaled to 3");
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Rescaled", "Scale", "scaled to 3");
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Resize", "scaled to 3");
  recorder.Record(Pod("web-1"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  ASSERT_TRUE(recorder.Flush(kTimeout));
  EXPECT_EQ(Events().size(), 6u);
  EXPECT_EQ(metrics_("emitted"), 6);
  EXPECT_EQ(metrics_("series"), 0);
}

TEST_F(EventRecorderTest, ARepeatAfterTheWindowStartsANewEvent) {
  EventRecorder recorder(*client_, Options(), clock_);
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  clock_.Advance(Minutes(7));
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  ASSERT_TRUE(recorder.Flush(kTimeout));
  std::vector<Object> events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_FALSE(events[0].contains("series"));
  EXPECT_FALSE(events[1].contains("series"));
  EXPECT_NE(events[0]["metadata"]["name"], events[1]["metadata"]["name"]);
}

TEST_F(EventRecorderTest, RateLimitDropsTheExcessPerObject) {
  EventRecorder recorder(*client_, Options(), clock_);
  for (int i = 0; i < 30; ++i) {
    recorder.Record(Pod("web-0"), kEventTypeNormal, absl::StrCat("Reason", i), "Act", "note");
  }
  EXPECT_EQ(metrics_("emitted"), 25);
  EXPECT_EQ(metrics_("dropped"), 5);
  // A repeat needs a token too.
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Reason0", "Act", "note");
  EXPECT_EQ(metrics_("dropped"), 6);
  // Other objects have their own bucket.
  recorder.Record(Pod("web-1"), kEventTypeNormal, "Reason0", "Act", "note");
  EXPECT_EQ(metrics_("emitted"), 26);

  // One token comes back every 5 minutes.
  clock_.Advance(Minutes(5));
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Late", "Act", "note");
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Later", "Act", "note");
  EXPECT_EQ(metrics_("emitted"), 27);
  EXPECT_EQ(metrics_("dropped"), 7);
  ASSERT_TRUE(recorder.Flush(kTimeout));
  EXPECT_EQ(Events().size(), 27u);
}

TEST_F(EventRecorderTest, TruncatesTheNoteTo1KiB) {
  EventRecorder recorder(*client_, Options(), clock_);
  recorder.Record(Pod("web-0"), kEventTypeWarning, std::string(300, 'R'), "Act",
                  std::string(5000, 'x'));
  ASSERT_TRUE(recorder.Flush(kTimeout));
  std::vector<Object> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["note"], std::string(1024, 'x'));
  EXPECT_EQ(events[0]["reason"], std::string(128, 'R'));
}

TEST_F(EventRecorderTest, RecordNeverBlocksOnAStuckApiServer) {
  EventRecorderOptions options = Options();
  options.queue_capacity = 8;
  EventRecorder recorder(*client_, options, clock_);
  server_.CloseGate();
  recorder.Record(Pod("web-0"), kEventTypeNormal, "First", "Act", "note");
  // The worker holds the first write in the stuck server.
  ASSERT_TRUE(Eventually([&] { return server_.Waiting() == 1; }));

  absl::Notification recorded;
  std::thread recorder_thread([&] {
    for (int i = 0; i < 100; ++i) {
      recorder.Record(Pod(absl::StrCat("web-", i)), kEventTypeNormal, "More", "Act", "note");
    }
    recorded.Notify();
  });
  const bool returned = recorded.WaitForNotificationWithTimeout(kTimeout);
  server_.OpenGate();  // lets a blocked Record() finish, so the join below cannot hang
  recorder_thread.join();
  ASSERT_TRUE(returned) << "Record() blocked while the API server was stuck";
  EXPECT_EQ(metrics_("emitted"), 1 + 8);
  EXPECT_EQ(metrics_("dropped"), 92);

  ASSERT_TRUE(recorder.Flush(kTimeout));
  EXPECT_EQ(Events().size(), 9u);
}

TEST_F(EventRecorderTest, ASeriesWhoseEventVanishedIsCreatedAgain) {
  EventRecorder recorder(*client_, Options(), clock_);
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  ASSERT_TRUE(recorder.Flush(kTimeout));
  std::vector<Object> before = Events();
  ASSERT_EQ(before.size(), 1u);
  const std::string name = before[0]["metadata"]["name"];
  server_.Erase(ObjectPath(resources::Events(), "shop", name));

  clock_.Advance(Minutes(1));
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  ASSERT_TRUE(recorder.Flush(kTimeout));
  std::vector<Object> after = Events();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0]["metadata"]["name"], name);
  EXPECT_EQ(after[0]["series"]["count"], 2);
  EXPECT_EQ(after[0]["note"], "scaled to 3");
  EXPECT_EQ(metrics_("failed"), 0);
}

TEST_F(EventRecorderTest, RetriesWhileTheApiServerIsUnavailable) {
  std::atomic<int> refused = 0;
  server_.SetInterceptor(
      [&](const std::string&,
          const HttpRequest& req) -> std::optional<absl::StatusOr<HttpResponse>> {
        if (req.method == "POST" && refused < 2) {
          ++refused;
          return InMemoryApiServer::StatusResponse(503, "ServiceUnavailable", "try later");
        }
        return std::nullopt;
      });
  EventRecorder recorder(*client_, Options(), clock_);
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  ASSERT_TRUE(recorder.Flush(kTimeout));
  EXPECT_EQ(Events().size(), 1u);
  EXPECT_EQ(server_.Requests("POST"), 3);
  EXPECT_EQ(metrics_("failed"), 0);
}

TEST_F(EventRecorderTest, ARefusedWriteIsCountedAndNotRetried) {
  server_.SetInterceptor(
      [&](const std::string&,
          const HttpRequest& req) -> std::optional<absl::StatusOr<HttpResponse>> {
        if (req.method == "POST") {
          return InMemoryApiServer::StatusResponse(403, "Forbidden", "events is forbidden");
        }
        return std::nullopt;
      });
  EventRecorder recorder(*client_, Options(), clock_);
  recorder.Record(Pod("web-0"), kEventTypeNormal, "Scaled", "Scale", "scaled to 3");
  ASSERT_TRUE(recorder.Flush(kTimeout));
  EXPECT_EQ(server_.Requests("POST"), 1);
  EXPECT_EQ(metrics_("failed"), 1);
  EXPECT_TRUE(Events().empty());
}

TEST_F(EventRecorderTest, InvalidTypeIsDropped) {
  EventRecorder recorder(*client_, Options(), clock_);
  recorder.Record(Pod("web-0"), "Info", "Scaled", "Scale", "scaled to 3");
  ASSERT_TRUE(recorder.Flush(kTimeout));
  EXPECT_TRUE(Events().empty());
  EXPECT_EQ(metrics_("dropped"), 1);
}

TEST_F(EventRecorderTest, ClusterScopedObjectsGetEventsInDefault) {
  EventRecorder recorder(*client_, Options(), clock_);
  Object env = {{"apiVersion", "capstan.dev/v1alpha1"},
                {"kind", "Environment"},
                {"metadata", {{"name", "production"}, {"uid", "uid-prod"}}}};
  recorder.Record(env, kEventTypeNormal, "Frozen", "Freeze", "freeze window started");
  ASSERT_TRUE(recorder.Flush(kTimeout));
  std::vector<Object> events = Events("default");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_FALSE(events[0]["regarding"].contains("namespace"));
  EXPECT_EQ(events[0]["regarding"]["kind"], "Environment");
}

TEST_F(EventRecorderTest, DestructorFlushesQueuedWrites) {
  {
    EventRecorder recorder(*client_, Options(), clock_);
    for (int i = 0; i < 3; ++i) {
      recorder.Record(Pod(absl::StrCat("web-", i)), kEventTypeNormal, "Scaled", "Scale", "x");
    }
  }
  EXPECT_EQ(Events().size(), 3u);
}

TEST_F(EventRecorderTest, DestructorGivesUpOnAStuckApiServer) {
  EventRecorderOptions options = Options();
  options.flush_timeout = Milliseconds(50);
  auto recorder = std::make_unique<EventRecorder>(*client_, options, clock_);
  server_.CloseGate();
  for (int i = 0; i < 3; ++i) {
    recorder->Record(Pod(absl::StrCat("web-", i)), kEventTypeNormal, "Scaled", "Scale", "x");
  }
  ASSERT_TRUE(Eventually([&] { return server_.Waiting() == 1; }));
  // The destructor waits for the write in flight; release the server from
  // another thread once the flush has timed out.
  std::thread opener([&] {
    // The destructor drops the two queued writes once its flush timed out.
    Eventually([&] { return metrics_("dropped") == 2; });
    server_.OpenGate();
  });
  recorder.reset();
  opener.join();
  EXPECT_EQ(Events().size(), 1u);
  EXPECT_EQ(metrics_("dropped"), 2);
}

}  // namespace
}  // namespace capstan::kube
