package com.example.schedules;

import java.util.Arrays;
import java.util.stream.Stream;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.WebApplicationType;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.builder.SpringApplicationBuilder;
import org.springframework.context.ConfigurableApplicationContext;

/**
 * Entry point. {@code --migrate} runs the Flyway migrations and exits (the deployment runs it as a
 * separate Job before the new version starts); without it the web server starts and never migrates.
 */
@SpringBootApplication
public class ScheduleTrackerApplication {

  static final String MIGRATE_FLAG = "--migrate";

  public static void main(String[] args) {
    if (Arrays.asList(args).contains(MIGRATE_FLAG)) {
      System.exit(migrate(args));
    }
    SpringApplication.run(ScheduleTrackerApplication.class, args);
  }

  /**
   * Starts a context without web server or broker listener and with Flyway enabled, so the migration
   * runs during startup; then exits. The overrides are command-line arguments because those take
   * precedence over application.yaml, which disables Flyway for normal starts.
   */
  static int migrate(String[] args) {
    Stream<String> overrides =
        Stream.of(
            "--spring.flyway.enabled=true",
            "--spring.rabbitmq.listener.simple.auto-startup=false",
            "--spring.datasource.hikari.initialization-fail-timeout=1");
    String[] rest =
        Stream.concat(Arrays.stream(args).filter(a -> !a.equals(MIGRATE_FLAG)), overrides)
            .toArray(String[]::new);
    ConfigurableApplicationContext context =
        new SpringApplicationBuilder(ScheduleTrackerApplication.class)
            .web(WebApplicationType.NONE)
            .run(rest);
    return SpringApplication.exit(context);
  }
}
