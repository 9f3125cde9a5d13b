package com.example.schedules;

import jakarta.validation.constraints.NotBlank;
import jakarta.validation.constraints.NotNull;
import jakarta.validation.constraints.Size;
import java.time.Instant;

/** The body of POST /api/schedules. */
public record NewSchedule(
    @NotBlank @Size(max = 200) String title, String description, @NotNull Instant startsAt) {}
