// The fixture of use-case tests that start from a fresh application and its
// demo world (StartDemoApp).
#ifndef LOCKBOX_TESTS_SUPPORT_DEMO_APP_TEST_H_
#define LOCKBOX_TESTS_SUPPORT_DEMO_APP_TEST_H_

#include <gtest/gtest.h>

#include <memory>

#include "tests/support/in_process.h"

namespace lockbox::testing {

class DemoAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto demo = StartDemoApp();
    ASSERT_TRUE(demo.ok()) << demo.status();
    app_ = std::move(demo->app);
    world_ = std::move(demo->world);
  }

  UseCases& use_cases() { return app_->use_cases(); }
  const DemoWorld& w() const { return *world_; }

  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<DemoWorld> world_;
};

}  // namespace lockbox::testing

#endif  // LOCKBOX_TESTS_SUPPORT_DEMO_APP_TEST_H_
