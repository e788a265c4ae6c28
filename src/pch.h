// Precompiled header: the heavy, rarely changing headers shared by every translation unit.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <algorithm>
#include <memory>
#include <string>
#include <vector>
