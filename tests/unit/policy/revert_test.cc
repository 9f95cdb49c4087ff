#include "capstan/policy/revert.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace capstan::policy {
namespace {

GateDecision Held(GateReason reason) {
  GateDecision d;
  d.allowed = false;
  d.reason = reason;
  d.message = "held";
  return d;
}

TEST(RevertPastGatesTest, Table) {
  const std::vector<api::RevisionRecord> history = {
      {"ccc", {"web:3"}, api::RevisionPhase::kProgressing, std::nullopt, "ccc"},  // newest first
      {"bbb", {"web:2"}, api::RevisionPhase::kReady, std::nullopt, "bbb"},
      {"aaa", {"web:1"}, api::RevisionPhase::kSuperseded, std::nullopt, "aaa"},
      {"fff", {"web:bad"}, api::RevisionPhase::kRolledBack, std::nullopt, "fff"},
      {"xxx", {"web:x"}, api::RevisionPhase::kFailed, std::nullopt, "xxx"},
      {"abo", {"web:a"}, api::RevisionPhase::kAborted, std::nullopt, "abo"},
  };
  GateDecision allowed;
  struct Case {
    const char* name;
    GateDecision decision;
    std::string desired;
    std::string current;
    bool lifted;
  };
  const Case cases[] = {
      {"back to a superseded revision past approval", Held(GateReason::kAwaitingApproval), "aaa",
       "ccc", true},
      {"back to the Ready revision past a freeze", Held(GateReason::kFrozenUntil), "bbb", "ccc",
       true},
      {"back past the upstream soak", Held(GateReason::kAwaitingUpstream), "aaa", "bbb", true},
      {"strategy not allowed is never lifted", Held(GateReason::kStrategyNotAllowed), "aaa", "ccc",
       false},
      {"a new revision waits", Held(GateReason::kAwaitingApproval), "new", "ccc", false},
      {"a revision that rolled back waits", Held(GateReason::kAwaitingApproval), "fff", "ccc",
       false},
      {"a revision that failed waits", Held(GateReason::kFrozenUntil), "xxx", "ccc", false},
      {"an aborted revision waits", Held(GateReason::kAwaitingApproval), "abo", "ccc", false},
      {"a revision only in progress waits", Held(GateReason::kAwaitingApproval), "ccc", "bbb",
       false},
      {"no change", Held(GateReason::kAwaitingApproval), "bbb", "bbb", false},
      {"allowed stays as it is", allowed, "aaa", "ccc", false},
      {"empty desired", Held(GateReason::kAwaitingApproval), "", "ccc", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const RevertDecision r = RevertPastGates(c.decision, history, c.desired, c.current);
    EXPECT_EQ(r.lifted, c.lifted);
    if (c.lifted) {
      EXPECT_NE(r.message.find(c.desired), std::string::npos) << r.message;
      EXPECT_NE(r.message.find("health checks still apply"), std::string::npos) << r.message;
    } else {
      EXPECT_EQ(r.message, "");
    }
  }
}

// Records match by desired-state digest: a state that shares a short revision with one
// that ran Ready (a 40-bit collision a tenant searched for) is new, and records written
// before digests existed match nothing.
TEST(RevertPastGatesTest, MatchesDigestsNotRevisions) {
  const std::vector<api::RevisionRecord> history = {
      {"aaa", {"web:1"}, api::RevisionPhase::kSuperseded, std::nullopt, "sha256:approved-state"},
      {"old", {"web:0"}, api::RevisionPhase::kSuperseded, std::nullopt, ""},
  };
  EXPECT_FALSE(RevertPastGates(Held(GateReason::kAwaitingApproval), history,
                               "sha256:colliding-state", "sha256:now", "aaa")
                   .lifted);
  EXPECT_EQ(RanReady(history, "aaa"), nullptr);
  EXPECT_EQ(RanReady(history, ""), nullptr);
  const RevertDecision r = RevertPastGates(Held(GateReason::kAwaitingApproval), history,
                                           "sha256:approved-state", "sha256:now", "aaa");
  EXPECT_TRUE(r.lifted);
  EXPECT_NE(r.message.find("revision aaa "), std::string::npos) << r.message;
}

TEST(RevertPastGatesTest, TrimmedHistoryDoesNotCount) {
  EXPECT_FALSE(RevertPastGates(Held(GateReason::kAwaitingApproval), {}, "aaa", "bbb").lifted);
  EXPECT_EQ(RanReady({}, "aaa"), nullptr);
}

}  // namespace
}  // namespace capstan::policy
