package com.example.schedules;

import java.util.Map;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.actuate.health.HealthComponent;
import org.springframework.boot.actuate.health.HealthEndpoint;
import org.springframework.boot.actuate.health.Status;
import org.springframework.http.HttpStatus;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;

/**
 * {@code GET /api/healthz}: the readiness group's status alone (UP or DOWN, no details) on the
 * API's port. The actuator itself may live on a management port that nothing routed to the API
 * reaches; this answers load balancers, smoke checks and the chart's helm test there. (Spring's
 * own "additional-path" of a health group takes a single path segment, so it cannot sit below
 * /api, where the Ingress sends API traffic.)
 */
@RestController
public class HealthzController {

  private final ObjectProvider<HealthEndpoint> health;

  public HealthzController(ObjectProvider<HealthEndpoint> health) {
    this.health = health;
  }

  @GetMapping("/api/healthz")
  public ResponseEntity<Map<String, String>> healthz() {
    HealthEndpoint endpoint = health.getIfAvailable();
    HealthComponent readiness = endpoint == null ? null : endpoint.healthForPath("readiness");
    Status status = readiness == null ? Status.UNKNOWN : readiness.getStatus();
    HttpStatus code = Status.UP.equals(status) ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE;
    return ResponseEntity.status(code).body(Map.of("status", status.getCode()));
  }
}
